//! Every setting of pg_hybrid, named `hybrid.*`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Threads tokenising during CREATE INDEX (0: one per CPU, at most 8).
pub static BUILD_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Rows a transaction may buffer per index before writing them out as a segment early.
pub static PENDING_LIMIT_KB: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
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

/// Candidate list size of a nearest-neighbour search (higher: better recall, slower).
pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(100);
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
        c"Extra rows a top-k search fetches beyond the LIMIT in its first round.",
        c"If rows turn out invisible or filtered out, further rounds fetch more; this only saves rounds.",
        &TOPK_HEADROOM,
        0,
        100000,
        GucContext::Userset,
        GucFlags::default(),
    );
}
