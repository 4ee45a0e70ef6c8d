//! Every setting of pg_hybrid, named `hybrid.*`.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Threads tokenising during CREATE INDEX (0: one per CPU, at most 8).
pub static BUILD_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Rows a transaction may buffer per index before writing them out as a segment early.
pub static PENDING_LIMIT_KB: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
/// A transaction that wrote at most this many rows to an index appends them to its pending log
/// instead of writing a segment (0: always a segment).
pub static LOG_MAX_ROWS: GucSetting<i32> = GucSetting::<i32>::new(100);
/// A committer drains the pending log into a segment once it holds this much.
pub static LOG_DRAIN_KB: GucSetting<i32> = GucSetting::<i32>::new(256);
/// Segments of one size tier merged together once this many exist.
pub static MERGE_FACTOR: GucSetting<i32> = GucSetting::<i32>::new(8);
/// Whether committing writers merge small segments themselves (until the merge worker does).
pub static INLINE_MERGE: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Whether the planner may use the ranked search scan.
pub static ENABLE_SEARCH_SCAN: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Rows fetched by the first round of a top-k search beyond the LIMIT (headroom for rows that
/// turn out invisible or filtered).
pub static TOPK_HEADROOM: GucSetting<i32> = GucSetting::<i32>::new(10);

/// Seconds between two sweeps of orphaned index folders by the launcher.
pub static SWEEP_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(300);

/// Seconds a per-database worker sleeps between two rounds of merges and snapshots.
pub static WORKER_NAPTIME_S: GucSetting<i32> = GucSetting::<i32>::new(10);
/// Per-database workers running at once.
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// Where snapshots go (`s3://bucket/prefix`, `file:///path`, `memory://name`); empty: the
/// folder `pg_hybrid_snapshots` of the data directory.
pub static SNAPSHOT_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Seconds between two snapshots of an index that changed (0: only `hybrid.snapshot_now`).
pub static SNAPSHOT_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(300);
/// Snapshots kept per index.
pub static SNAPSHOT_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(3);
/// S3 connection settings; unset ones come from the server's standard `AWS_*` environment.
pub static S3_ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static S3_REGION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static S3_ALLOW_HTTP: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static S3_ACCESS_KEY_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static S3_SECRET_ACCESS_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// A string setting, `None` when unset or empty.
pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|c| c.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}

/// Candidate list size of a nearest-neighbour search (higher: better recall, slower).
pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(150);
/// A filtered nearest-neighbour search scores the matching rows exactly (rather than walking
/// the graph) when a segment has at most this many of them.
pub static EXACT_SEARCH_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(20_000);

/// Registers the settings. Called from `_PG_init` in every backend.
pub fn init() {
    GucRegistry::define_int_guc(
        c"hybrid.build_threads",
        c"Threads that tokenise rows while a hybrid index is built (0 = one per CPU, at most 8).",
        c"The main backend scans the table; these threads only tokenise and write segments.",
        &BUILD_THREADS,
        0,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.pending_limit",
        c"Memory a transaction may use per hybrid index for rows not yet written to a segment.",
        c"Past this, the rows are written as a segment before commit (harmless if the transaction aborts).",
        &PENDING_LIMIT_KB,
        1024,
        1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"hybrid.log_max_rows",
        c"Transactions writing at most this many rows to a hybrid index append them to its pending log.",
        c"One append and fsync per commit instead of a new segment; readers index the log in memory until it is drained. 0 writes a segment for every transaction.",
        &LOG_MAX_ROWS,
        0,
        100_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.log_drain_size",
        c"Size of a hybrid index's pending log at which a committing transaction writes it as a segment.",
        c"Smaller: less for each reader to index in memory; larger: fewer, bigger segments. The merge worker, VACUUM and snapshots drain it too.",
        &LOG_DRAIN_KB,
        16,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"hybrid.merge_factor",
        c"Number of similar-sized segments of a hybrid index that are merged into one.",
        c"Lower values mean fewer segments (faster search) and more merging (slower writes).",
        &MERGE_FACTOR,
        2,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"hybrid.inline_merge",
        c"Whether a committing transaction merges small segments of the indexes it wrote.",
        c"Merging is skipped when another process is already merging the same index.",
        &INLINE_MERGE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"hybrid.enable_search_scan",
        c"Enables the planner's use of the ranked hybrid search scan.",
        c"The scan computes hybrid.score() and pushes ORDER BY score LIMIT k into the index.",
        &ENABLE_SEARCH_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.ef_search",
        c"Candidate list size of HNSW nearest-neighbour searches.",
        c"Higher values find the true nearest neighbours more often and take longer; at least the rows asked for are searched.",
        &EF_SEARCH,
        1,
        10_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.exact_search_threshold",
        c"Filtered vector searches score matching rows exactly when a segment has at most this many.",
        c"Above it, the HNSW graph is walked with the filter applied inside the walk.",
        &EXACT_SEARCH_THRESHOLD,
        0,
        100_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.sweep_interval",
        c"Time between two sweeps of orphaned index folders.",
        c"The launcher also sweeps at server start.",
        &SWEEP_INTERVAL_S,
        1,
        86400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"hybrid.topk_headroom",
        c"Extra rows a top-k search fetches beyond the LIMIT in its first round, when some may be lost.",
        c"Used when the scan has other conditions, or when a recent search of the index in this session met invisible rows; otherwise the first round fetches exactly the LIMIT. If rows turn out invisible or filtered out, further rounds fetch more; this only saves rounds.",
        &TOPK_HEADROOM,
        0,
        100000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.worker_naptime",
        c"Time between two rounds of a pg_hybrid database worker (merges, snapshots, reconciliation).",
        c"Each round merges segments as the merge policy asks, snapshots indexes that are due and restores missing index folders.",
        &WORKER_NAPTIME_S,
        1,
        86400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"hybrid.max_workers",
        c"Most pg_hybrid database workers running at once.",
        c"Each takes a background worker slot (max_worker_processes) while it runs.",
        &MAX_WORKERS,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"hybrid.snapshot_url",
        c"Where snapshots of hybrid indexes are stored: s3://bucket/prefix, file:///path or memory://name.",
        c"Empty: the folder pg_hybrid_snapshots in the data directory (survives a lost index folder, not a lost disk).",
        &SNAPSHOT_URL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hybrid.snapshot_interval",
        c"Time between two snapshots of a hybrid index that changed (0: only hybrid.snapshot_now).",
        c"Unchanged indexes are not snapshotted again.",
        &SNAPSHOT_INTERVAL_S,
        0,
        7 * 86400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"hybrid.snapshot_retention",
        c"Snapshots kept per hybrid index; older ones are deleted, then files no snapshot needs.",
        c"Files are shared between snapshots, so keeping more costs only what changed.",
        &SNAPSHOT_RETENTION,
        1,
        1000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"hybrid.s3_endpoint",
        c"S3 endpoint URL for s3:// snapshot URLs (empty: AWS_ENDPOINT or AWS itself).",
        c"For S3-compatible servers such as MinIO: http://host:port.",
        &S3_ENDPOINT,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"hybrid.s3_region",
        c"S3 region for s3:// snapshot URLs (empty: AWS_REGION, else us-east-1).",
        c"",
        &S3_REGION,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"hybrid.s3_allow_http",
        c"Allows plain HTTP to the S3 endpoint (also implied by an http:// endpoint).",
        c"",
        &S3_ALLOW_HTTP,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"hybrid.s3_access_key_id",
        c"S3 access key id (empty: AWS_ACCESS_KEY_ID and the other standard AWS sources).",
        c"",
        &S3_ACCESS_KEY_ID,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"hybrid.s3_secret_access_key",
        c"S3 secret access key (empty: AWS_SECRET_ACCESS_KEY and the other standard AWS sources).",
        c"Only superusers can read it.",
        &S3_SECRET_ACCESS_KEY,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
}
