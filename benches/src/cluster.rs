//! The benchmark cluster: a tuned PostgreSQL 15 cluster with pg_hybrid preloaded, kept between
//! runs in a fixed data directory (default `/var/tmp/pg_hybrid/bench`), so that a second run
//! reuses the tables and indexes a first one loaded. Also what a report says about the machine.
//!
//! Each run rewrites the settings file and restarts the server (so a newly installed
//! `pg_hybrid.so` and the settings of this run are the ones measured), and stops it at the end.
//! The server runs as the unprivileged user `pgtest`, like every cluster of the project.

use std::path::{Path, PathBuf};
use std::process::Command;

use pg_hybrid_tests::{Client, NoTls, PG_BIN, RUN_USER};
use serde::{Deserialize, Serialize};

/// Default data directory of the benchmark cluster.
pub const DEFAULT_DIR: &str = "/var/tmp/pg_hybrid/bench";
/// Default port (the demo cluster has 5488, pg_regress 5489).
pub const DEFAULT_PORT: u16 = 5490;
/// The database the benchmarks use.
pub const BENCH_DB: &str = "bench";
/// The settings file this module writes (included from postgresql.conf).
const CONF_FILE: &str = "pg_hybrid_bench.conf";

/// Settings of the benchmark cluster: a dedicated server with ~20 GB of RAM; durability as in
/// production (fsync and synchronous_commit on).
pub const TUNED_SETTINGS: &[&str] = &[
    "shared_buffers = 2GB",
    "effective_cache_size = 12GB",
    "maintenance_work_mem = 1GB",
    "work_mem = 64MB",
    "max_wal_size = 8GB",
    "checkpoint_timeout = 30min",
    "max_parallel_maintenance_workers = 2",
    "max_parallel_workers_per_gather = 2",
    "random_page_cost = 1.1",
    "jit = off",
    "fsync = on",
    "synchronous_commit = on",
    "statement_timeout = 0",
    // The benchmark decides when VACUUM and ANALYZE run; pg_hybrid's own workers stay on.
    "autovacuum = off",
];

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A PostgreSQL binary run as the cluster user, without RUST_BACKTRACE (pgrx would append a
/// backtrace to every error).
fn pg_command(bin: &str) -> Command {
    let path = format!("{PG_BIN}/{bin}");
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", RUN_USER, "--", &path]);
        c
    } else {
        Command::new(path)
    };
    c.env_remove("RUST_BACKTRACE");
    c
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: could not run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

/// The benchmark cluster (see the module comment).
pub struct BenchCluster {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl BenchCluster {
    /// Creates the cluster in `dir` if it has none (everything in `dir` is removed first when
    /// `fresh`), writes the settings, (re)starts the server and makes sure database
    /// [`BENCH_DB`] exists with the extension.
    pub fn start(dir: &Path, port: u16, extra_settings: &[&str], fresh: bool) -> BenchCluster {
        pg_hybrid_tests::ensure_installed();
        let mut c = BenchCluster { dir: dir.to_path_buf(), port, running: false };
        if c.server_running() {
            c.pg_ctl_stop();
        }
        if fresh && dir.exists() {
            eprintln!("bench: --fresh: removing {}", dir.display());
            std::fs::remove_dir_all(dir).expect("remove the benchmark cluster");
        }
        if !dir.join("PG_VERSION").exists() {
            eprintln!("bench: creating the benchmark cluster in {}", dir.display());
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).expect("create the parent of the cluster directory");
            }
            let mut install = Command::new("install");
            install.args(["-d", "-m", "700"]);
            if is_root() {
                install.args(["-o", RUN_USER, "-g", RUN_USER]);
            }
            install.arg(dir);
            run(install, "create the cluster directory");
            let mut initdb = pg_command("initdb");
            initdb.arg("-D").arg(dir).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"]);
            run(initdb, "initdb");
            let conf = dir.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
            text.push_str(&format!("\n# pg_hybrid benchmarks (written by pg_hybrid_bench on every run)\ninclude_if_exists = '{CONF_FILE}'\n"));
            std::fs::write(&conf, text).expect("write postgresql.conf");
        }
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '/tmp'\n\
             shared_preload_libraries = 'pg_hybrid'\nmax_connections = 100\nlogging_collector = off\n\
             log_min_messages = warning\n"
        );
        for s in TUNED_SETTINGS.iter().chain(extra_settings) {
            conf.push_str(s);
            conf.push('\n');
        }
        let conf_path = dir.join(CONF_FILE);
        std::fs::write(&conf_path, conf).expect("write the settings file");
        if is_root() {
            run(
                {
                    let mut ch = Command::new("chown");
                    ch.arg(format!("{RUN_USER}:{RUN_USER}")).arg(&conf_path);
                    ch
                },
                "chown the settings file",
            );
        }
        let mut start = pg_command("pg_ctl");
        start.arg("-D").arg(dir).arg("-l").arg(dir.join("server.log")).args(["-w", "-t", "600", "start"]);
        run(start, "pg_ctl start (is another server using the port? see --port)");
        c.running = true;

        let mut admin = c.connect_db("postgres");
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&BENCH_DB])
            .expect("pg_database")
            .is_some();
        if !exists {
            admin.batch_execute(&format!("CREATE DATABASE {BENCH_DB}")).expect("create the benchmark database");
        }
        c.connect().batch_execute("CREATE EXTENSION IF NOT EXISTS pg_hybrid").expect("create extension");
        c
    }

    fn server_running(&self) -> bool {
        if !self.dir.join("PG_VERSION").exists() {
            return false;
        }
        let mut st = pg_command("pg_ctl");
        st.arg("-D").arg(&self.dir).arg("status");
        st.output().map(|o| o.status.success()).unwrap_or(false)
    }

    fn pg_ctl_stop(&mut self) {
        let mut stop = pg_command("pg_ctl");
        stop.arg("-D").arg(&self.dir).args(["-m", "fast", "-w", "-t", "300", "stop"]);
        run(stop, "pg_ctl stop");
        self.running = false;
    }

    /// Stops the server (fast shutdown); the data directory stays for the next run.
    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl_stop();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn conn_str(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=60", self.port)
    }

    /// A session in [`BENCH_DB`].
    pub fn connect(&self) -> Client {
        self.connect_db(BENCH_DB)
    }

    pub fn connect_db(&self, db: &str) -> Client {
        Client::connect(&self.conn_str(db), NoTls)
            .unwrap_or_else(|e| panic!("connect to {db} on port {}: {e}", self.port))
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        if self.running {
            let mut stop = pg_command("pg_ctl");
            stop.arg("-D").arg(&self.dir).args(["-m", "fast", "-w", "-t", "300", "stop"]);
            let _ = stop.output();
        }
    }
}

/// The machine and software a report was measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_gb: f64,
    pub kernel: String,
    pub postgres: String,
    pub pg_hybrid: String,
    pub git_commit: String,
    /// Settings of the cluster that matter for the results (name = value).
    pub settings: Vec<String>,
}

/// What the machine, the server and the source tree are.
pub fn machine(c: &mut Client) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let ram_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let postgres: String = c.query_one("SELECT version()", &[]).expect("version").get(0);
    let pg_hybrid: String =
        c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_hybrid'", &[]).expect("extversion").get(0);
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mut git_commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
        git_commit.push_str(" (with uncommitted changes)");
    }
    let names: Vec<String> =
        TUNED_SETTINGS.iter().filter_map(|s| s.split('=').next()).map(|s| s.trim().to_string()).collect();
    let settings = c
        .query(
            "SELECT name || ' = ' || setting || coalesce(' ' || unit, '') FROM pg_settings
              WHERE name = ANY($1) OR name LIKE 'hybrid.%' ORDER BY name",
            &[&names],
        )
        .expect("pg_settings")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Machine { cpu, cores, ram_gb: ram_kb / 1024.0 / 1024.0, kernel, postgres, pg_hybrid, git_commit, settings }
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
