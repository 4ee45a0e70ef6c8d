//! The background workers' life cycle: the launcher and the per-database rounds are visible
//! (pg_stat_activity, `hybrid.workers`); the launcher comes back after `pg_terminate_backend`;
//! the cluster recovers from a `kill -9` of a database worker; a fast shutdown is prompt while a
//! worker is busy; errors show in `hybrid.workers`, back off, and clear once the cause is fixed.

mod snaputil;

use std::time::{Duration, Instant};

use pg_hybrid_tests::s3::MotoServer;
use pg_hybrid_tests::*;
use snaputil::*;

const NAPTIME: &str = "hybrid.worker_naptime = 1";

fn launcher_pids(c: &mut Client) -> Vec<i32> {
    c.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_hybrid launcher'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn launcher_row(c: &mut Client) -> Option<WorkerRow> {
    workers(c).into_iter().find(|w| w.kind == "launcher")
}

/// Connects, retrying while the server restarts after a crash.
fn connect_retrying(cluster: &TestCluster, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        match Client::connect(&cluster.conn_str(TEST_DB), NoTls) {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "the server did not come back: {e}\n{}", cluster.log_tail(40));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[test]
fn launcher_and_database_rounds_are_visible() {
    let cluster = TestCluster::with_settings("workers_visible", &[NAPTIME, "hybrid.snapshot_interval = 0"]);
    cluster.create_database("other");
    let mut c = cluster.connect();
    load_docs(&mut c, 100);

    let pids = launcher_pids(&mut c);
    assert_eq!(pids.len(), 1, "one launcher in pg_stat_activity: {pids:?}");
    let l = launcher_row(&mut c).expect("the launcher has a row in hybrid.workers");
    assert_eq!((l.pid, l.state.as_str(), l.database.as_deref()), (Some(pids[0]), "running", None), "{l:?}");

    // Rounds of both databases with the extension come, one after another.
    let first = wait_rounds(&cluster, TEST_DB, 0, 1, Duration::from_secs(30));
    let later = wait_rounds(&cluster, TEST_DB, first.runs, 3, Duration::from_secs(30));
    assert!(later.has_last_run && later.errors == 0 && later.last_error.is_none(), "{later:?}");
    assert!(later.state == "running" || later.state == "sleeping");
    let other = wait_rounds(&cluster, "other", 0, 2, Duration::from_secs(30));
    assert_eq!(other.errors, 0, "{other:?}");
    // Databases without pg_hybrid are not shown.
    let rows = workers(&mut c);
    assert!(!rows.iter().any(|w| w.database.as_deref() == Some("postgres")), "{rows:?}");
    // A worker shows in pg_stat_activity while it runs. Rounds take milliseconds, so one is
    // made to last: the index folder is removed while a session holds the table, and the
    // worker that comes to restore it waits for the table lock, in plain sight.
    let dir = index_dir(&mut c, "docs_search");
    let mut hold = hold_table(&cluster);
    lose_folder(&dir);
    wait_worker_waiting_for_lock(&cluster, "folder removed");
    let row = c
        .query_one(
            "SELECT datname::text, state FROM pg_stat_activity WHERE backend_type = 'pg_hybrid worker' AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(TEST_DB), "the worker is connected to its database");
    let w = db_worker(&mut c, TEST_DB).expect("the worker has a row");
    assert!(w.pid.is_some() && w.state == "running", "hybrid.workers shows the running worker: {w:?}");
    hold.batch_execute("ROLLBACK").unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || fresh_search(&cluster, COMMON_WORD).is_ok()),
        "the worker did not restore the index once the table was free\n{}",
        cluster.log_tail(20)
    );
    cluster.assert_no_backend_crash();
}

#[test]
fn a_terminated_launcher_is_started_again() {
    let cluster = TestCluster::with_settings("workers_terminate", &[NAPTIME, "hybrid.snapshot_interval = 0"]);
    let mut c = cluster.connect();
    load_docs(&mut c, 100);
    let before = wait_rounds(&cluster, TEST_DB, 0, 1, Duration::from_secs(30));
    let pid = launcher_pids(&mut c)[0];
    assert!(c.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get::<_, bool>(0));

    let mut new_pid = None;
    let started = Instant::now();
    let back = wait_until(Duration::from_secs(25), || {
        new_pid = launcher_pids(&mut c).into_iter().find(|p| *p != pid);
        new_pid.is_some()
    });
    assert!(back, "no launcher 25 s after pg_terminate_backend of the old one ({pid})\n{}", cluster.log_tail(20));
    eprintln!("launcher {pid} terminated, {:?} back as {:?}", started.elapsed(), new_pid);
    // Rounds go on under the new launcher.
    let after = wait_rounds(&cluster, TEST_DB, before.runs, 2, Duration::from_secs(30));
    assert_eq!(after.errors, 0, "{after:?}");
    let l = launcher_row(&mut c).unwrap();
    assert_eq!(l.pid, new_pid, "{l:?}");
    cluster.assert_no_backend_crash();
}

/// `kill -9` of a database worker in the middle of a restore (held back by a lock so that it
/// is caught alive): the postmaster restarts the cluster, and the next worker finishes the job.
#[test]
fn kill9_of_a_database_worker_is_recovered_from() {
    let cluster = TestCluster::with_settings("workers_kill9", &[NAPTIME, "hybrid.snapshot_interval = 0"]);
    let mut c = cluster.connect();
    load_docs(&mut c, 2000);
    let dir = index_dir(&mut c, "docs_search");
    let mut hold = cluster.connect();
    hold.batch_execute("BEGIN; LOCK TABLE docs IN ROW EXCLUSIVE MODE").unwrap();
    lose_folder(&dir);
    let mut pid: Option<i32> = None;
    let waiting = wait_until(Duration::from_secs(30), || {
        pid = c
            .query(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_hybrid worker' AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .first()
            .map(|r| r.get(0));
        pid.is_some()
    });
    assert!(waiting, "no worker came to restore the index\n{}", cluster.log_tail(20));
    let pid = pid.unwrap();
    // SAFETY: SIGKILL of a process of our own test cluster.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    // The postmaster treats it as a crash: every session is ended, the server reinitialises.
    assert!(
        wait_until(Duration::from_secs(30), || hold.batch_execute("SELECT 1").is_err()),
        "the crash of a worker should end the other sessions (shared memory may be corrupt)"
    );
    let mut c = connect_retrying(&cluster, Duration::from_secs(60));
    assert!(
        cluster.server_log().contains(&format!("(PID {pid}) was terminated by signal 9")),
        "{}",
        cluster.log_tail(20)
    );
    // A new worker restores the index (from the table: there is no snapshot) and rounds go on.
    let ok = wait_until(Duration::from_secs(60), || {
        let mut s = connect_retrying(&cluster, Duration::from_secs(30));
        force_index(&mut s);
        s.query("SELECT id FROM docs WHERE body @@@ 'common'", &[]).is_ok()
    });
    assert!(ok, "the index was not restored after the crash\n{}", cluster.log_tail(30));
    assert_index_matches_table(&mut c, "after the crash");
    assert_verify_ok(&mut c, "docs_search");
    let r = runs(&mut c, TEST_DB);
    let w = wait_rounds(&cluster, TEST_DB, r, 2, Duration::from_secs(30));
    assert_eq!(w.errors, 0, "{w:?}");
    // The killed worker's staging folder (if any) is gone after the next rounds.
    let leftovers: Vec<_> = cluster
        .sidecar_dirs(TEST_DB)
        .into_iter()
        .filter(|d| d.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `pg_ctl stop -m fast` while a database worker is in the middle of a snapshot upload to a
/// store that stopped answering (requests stall in the proxy): the shutdown must not wait for
/// the store's timeouts.
#[test]
fn fast_shutdown_is_prompt_while_a_worker_uploads() {
    let moto = MotoServer::start("shutdown");
    let mut cluster = cluster_with_store(
        "workers_shutdown",
        &moto,
        "snaps",
        // Snapshots due at once (the index never had one).
        &["hybrid.snapshot_interval = 1"],
    );
    let mut c = cluster.connect();
    moto.proxy().hold();
    load_docs(&mut c, 2000);
    // A worker starts a snapshot and stalls.
    let busy = wait_until(Duration::from_secs(30), || {
        moto.proxy().connections() > 0
            && count(&mut c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_hybrid worker'") > 0
    });
    assert!(busy, "no worker started a snapshot");
    std::thread::sleep(Duration::from_secs(2));
    let w = db_worker(&mut c, TEST_DB);
    eprintln!("busy worker: {w:?}");
    assert!(
        count(&mut c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_hybrid worker'") > 0,
        "the worker should still be stuck in its upload"
    );
    drop(c);
    let result = cluster.stop_within(Duration::from_secs(30));
    moto.proxy().release();
    match result {
        Ok(took) => {
            eprintln!("fast shutdown took {took:?}");
            assert!(took < Duration::from_secs(10), "fast shutdown took {took:?} while a worker uploaded");
        }
        Err(e) => panic!("{e}\nstill running: {:?}\n{}", server_processes(&cluster), cluster.log_tail(20)),
    }
}

/// The command lines of the processes the cluster's postmaster started.
fn server_processes(cluster: &TestCluster) -> Vec<String> {
    let Some(pm) = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid =
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pm) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push(format!("{pid}: {}", cmd.trim()));
        }
    }
    out
}

/// A store that cannot be reached: the round's error shows in `hybrid.workers` (and the server
/// log, without the secret key), the worker backs off; once the setting is fixed and reloaded,
/// snapshots are taken and rounds run without new errors.
#[test]
fn errors_show_back_off_and_clear() {
    let secret = "Sup3rSecretKey-xyz";
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cluster = TestCluster::with_settings(
        "workers_errors",
        &[
            NAPTIME,
            "hybrid.snapshot_interval = 1",
            "hybrid.snapshot_url = 's3://errbucket/snaps'",
            &format!("hybrid.s3_endpoint = 'http://127.0.0.1:{dead_port}'"),
            "hybrid.s3_allow_http = on",
            "hybrid.s3_region = 'us-east-1'",
            "hybrid.s3_access_key_id = 'test'",
            &format!("hybrid.s3_secret_access_key = '{secret}'"),
        ],
    );
    let mut c = cluster.connect();
    load_docs(&mut c, 300);
    let mut failed = None;
    let ok = wait_until(Duration::from_secs(60), || {
        failed = db_worker(&mut c, TEST_DB).filter(|w| w.errors > 0);
        failed.is_some()
    });
    assert!(ok, "no error recorded with an unreachable store: {:?}", db_worker(&mut c, TEST_DB));
    let w = failed.unwrap();
    eprintln!("{w:?}");
    let msg = w.last_error.clone().expect("last_error");
    assert!(msg.contains("snapshot of docs_search") && msg.contains("s3://errbucket/snaps"), "{msg}");
    assert!(w.backing_off, "next_run_after should be in the future: {w:?}");
    let last_error_at: bool = c
        .query_one("SELECT last_error_at > now() - interval '2 minutes' FROM hybrid.workers WHERE kind = 'database worker' AND database = $1", &[&TEST_DB])
        .unwrap()
        .get(0);
    assert!(last_error_at);
    // While backing off, no new round starts.
    let runs_then = w.runs + w.errors;
    std::thread::sleep(Duration::from_secs(3));
    let w2 = db_worker(&mut c, TEST_DB).unwrap();
    assert_eq!(w2.runs + w2.errors, runs_then, "a round ran during the back-off: {w2:?}");
    assert!(cluster.server_log().contains("snapshot of docs_search failed"), "{}", cluster.log_tail(20));
    assert!(!cluster.server_log().contains(secret), "the secret key is in the server log");
    assert!(!msg.contains(secret));

    // Fix it.
    let moto = MotoServer::start("errbucket");
    c.batch_execute(&format!("ALTER SYSTEM SET hybrid.s3_endpoint = '{}'", moto.endpoint())).unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let errors_then = db_worker(&mut c, TEST_DB).unwrap().errors;
    let ok = wait_until(Duration::from_secs(120), || !snapshot_rows(&mut c, "docs_search").is_empty());
    assert!(ok, "no snapshot after the fix: {:?}", db_worker(&mut c, TEST_DB));
    assert_eq!(manifests(&moto.client(), "snaps").len(), 1);
    let w = db_worker(&mut c, TEST_DB).unwrap();
    let w = wait_rounds(&cluster, TEST_DB, w.runs, 2, Duration::from_secs(30));
    assert_eq!(w.errors, errors_then, "new errors after the fix: {w:?}");
    assert!(!w.backing_off, "{w:?}");
    cluster.assert_no_backend_crash();
}
