//! Harness of pg_hybrid's client-side integration tests.
//!
//! Each test starts its own throw-away PostgreSQL 15 cluster ([`TestCluster`]) with pg_hybrid in
//! `shared_preload_libraries`, talks to it over TCP with the synchronous `postgres` client, and
//! can stop, restart or `kill -9` it. Clusters run as the unprivileged user `pgtest` (Postgres
//! refuses to run as root); the tests themselves may run as root.
//!
//! The extension must already be installed (`make install`): the tests never build it, so they
//! always exercise the library the server would load.
//!
//! Also here: deterministic English-like text ([`body_of`], [`title_of`]), the `docs` table the
//! test files share ([`create_docs`]), and small query helpers.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use postgres::{Client, NoTls};

pub mod s3;

/// Binaries of the PostgreSQL the extension is installed into.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The installed extension library.
pub const PG_HYBRID_SO: &str = "/usr/lib/postgresql/15/lib/pg_hybrid.so";
/// The installed control file.
pub const PG_HYBRID_CONTROL: &str = "/usr/share/postgresql/15/extension/pg_hybrid.control";
/// Environment variable naming a folder that holds a `pg_hybrid.so` to test instead of the
/// installed one (put first on the clusters' `dynamic_library_path`; the SQL scripts are still
/// the installed ones). For trying a build without installing it, e.g. a deliberately broken
/// one to see that the tests catch it.
pub const LIBRARY_DIR_ENV: &str = "PG_HYBRID_LIBRARY_DIR";
/// OS user that runs the clusters.
pub const RUN_USER: &str = "pgtest";
/// Database every cluster gets, with the extension created in it.
pub const TEST_DB: &str = "test";

// ---------------------------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------------------------

/// Panics with instructions unless the extension is installed and the cluster user exists.
/// Checked once per test binary.
pub fn ensure_installed() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        for f in [PG_HYBRID_SO, PG_HYBRID_CONTROL] {
            if !Path::new(f).exists() {
                return Err(format!(
                    "pg_hybrid is not installed ({f} is missing): run `make install` first \
                     (the integration tests never build or install the extension themselves)"
                ));
            }
        }
        if let Some(dir) = std::env::var_os(LIBRARY_DIR_ENV) {
            let so = Path::new(&dir).join("pg_hybrid.so");
            if !so.exists() {
                return Err(format!("{LIBRARY_DIR_ENV} is set but {} is missing", so.display()));
            }
        }
        if !Path::new(&format!("{PG_BIN}/initdb")).exists() {
            return Err(format!("PostgreSQL 15 binaries not found in {PG_BIN}: run `make setup`"));
        }
        sweep_stale_clusters();
        if user_ids(RUN_USER).is_none() {
            return Err(format!("OS user \"{RUN_USER}\" is missing (clusters run as that user): run `make setup`"));
        }
        Ok(())
    });
    if let Err(msg) = r {
        panic!("{msg}");
    }
}

/// Prefix of the data directories of test clusters under the temporary directory; the full
/// name is `<prefix><test>_<pid of the test process>_<sequence>`.
const CLUSTER_DIR_PREFIX: &str = "pg_hybrid_it_";

/// Stops and removes clusters left behind by test processes that no longer exist (killed by a
/// timeout, say), so that a machine running the suite again and again does not fill up with
/// postmasters. Clusters of live test processes are left alone.
fn sweep_stale_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(CLUSTER_DIR_PREFIX) else { continue };
        let mut parts = rest.rsplit('_');
        let (Some(_seq), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<i32>().ok())) else {
            continue;
        };
        if pid == std::process::id() as i32 || proc_state(pid).is_some() {
            continue;
        }
        let dir = e.path();
        kill_postmaster_tree(&dir);
        let _ = fs::remove_dir_all(&dir);
    }
}

/// uid and gid of an OS user.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the ids out at once.
    // The tests call it only under the OnceLock/initialisation paths, so no concurrent call
    // overwrites the storage between the call and the reads in practice.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

fn run_user_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| user_ids(RUN_USER).expect("cluster user exists"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL binary as the cluster user.
fn pg_command(bin: &str) -> Command {
    let path = format!("{PG_BIN}/{bin}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", RUN_USER, "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: could not run: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

static CLUSTER_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A throw-away PostgreSQL cluster with pg_hybrid preloaded and a database [`TEST_DB`] in which
/// the extension is created. Stopped and deleted on drop (set `PG_HYBRID_KEEP_CLUSTERS=1` to
/// keep the data directory of failed tests for a post-mortem).
pub struct TestCluster {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl TestCluster {
    /// initdb, start, and create [`TEST_DB`] with the extension.
    pub fn new(name: &str) -> TestCluster {
        Self::with_settings(name, &[])
    }

    /// Like [`TestCluster::new`], with extra `postgresql.conf` lines (`"key = value"`).
    pub fn with_settings(name: &str, settings: &[&str]) -> TestCluster {
        ensure_installed();
        let seq = CLUSTER_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}_{}_{}", name, std::process::id(), seq));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create data directory");
        let (uid, gid) = run_user_ids();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown data directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod data directory");

        let mut initdb = pg_command("initdb");
        initdb.arg("-D").arg(&dir).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "-N"]);
        run(initdb, "initdb");

        // autovacuum is off so that the tests decide when VACUUM runs (vacuum.rs counts index
        // entries before and after it); concurrency.rs runs VACUUM alongside writers itself.
        let mut conf = String::from(
            "\n# pg_hybrid integration tests\n\
             include_if_exists = 'pg_hybrid_test_port.conf'\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '/tmp'\n\
             shared_preload_libraries = 'pg_hybrid'\n\
             fsync = on\n\
             max_connections = 40\n\
             shared_buffers = 64MB\n\
             logging_collector = off\n\
             log_min_messages = warning\n\
             autovacuum = off\n\
             statement_timeout = '180s'\n",
        );
        if let Some(lib_dir) = std::env::var_os(LIBRARY_DIR_ENV) {
            conf.push_str(&format!("dynamic_library_path = '{}:$libdir'\n", Path::new(&lib_dir).display()));
        }
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let mut f =
            fs::OpenOptions::new().append(true).open(dir.join("postgresql.conf")).expect("open postgresql.conf");
        f.write_all(conf.as_bytes()).expect("write postgresql.conf");

        let mut c = TestCluster { dir, port: 0, running: false };
        c.start();
        let mut admin = c.connect_db("postgres");
        admin.batch_execute(&format!("CREATE DATABASE {TEST_DB}")).expect("create test database");
        drop(admin);
        c.connect().batch_execute("CREATE EXTENSION pg_hybrid").expect("create extension");
        c
    }

    /// The data directory ($PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for `db`.
    pub fn conn_str(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={} connect_timeout=30", self.port, db)
    }

    /// A new session in [`TEST_DB`].
    pub fn connect(&self) -> Client {
        self.connect_db(TEST_DB)
    }

    /// A new session in database `db`.
    pub fn connect_db(&self, db: &str) -> Client {
        Client::connect(&self.conn_str(db), NoTls)
            .unwrap_or_else(|e| panic!("connect to {db} on port {}: {e}\n{}", self.port, self.log_tail(40)))
    }

    /// Creates database `db` with the extension in it.
    pub fn create_database(&self, db: &str) {
        self.connect_db("postgres").batch_execute(&format!("CREATE DATABASE {db}")).expect("create database");
        self.connect_db(db).batch_execute("CREATE EXTENSION pg_hybrid").expect("create extension");
    }

    /// OID of database `db`.
    pub fn db_oid(&self, db: &str) -> u32 {
        let mut c = self.connect_db("postgres");
        let row = c
            .query_one("SELECT oid::int8 FROM pg_database WHERE datname = $1", &[&db])
            .unwrap_or_else(|e| panic!("oid of database {db}: {e}"));
        row.get::<_, i64>(0) as u32
    }

    /// `$PGDATA/pg_hybrid`.
    pub fn sidecar_base(&self) -> PathBuf {
        self.dir.join("pg_hybrid")
    }

    /// `$PGDATA/pg_hybrid/<oid>`.
    pub fn sidecar_db_dir(&self, db_oid: u32) -> PathBuf {
        self.sidecar_base().join(db_oid.to_string())
    }

    /// Every folder under `$PGDATA/pg_hybrid/<oid of db>/`, sorted. Hidden folders (an index
    /// being assembled under a temporary name) are included: once a statement has finished,
    /// none may be left.
    pub fn sidecar_dirs(&self, db: &str) -> Vec<PathBuf> {
        self.sidecar_dirs_of_oid(self.db_oid(db))
    }

    /// [`TestCluster::sidecar_dirs`] by database OID (for a database that no longer exists).
    pub fn sidecar_dirs_of_oid(&self, db_oid: u32) -> Vec<PathBuf> {
        let root = self.sidecar_db_dir(db_oid);
        let mut dirs: Vec<PathBuf> = match fs::read_dir(&root) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect(),
            Err(_) => Vec::new(),
        };
        dirs.sort();
        dirs
    }

    /// Path of the server log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The whole server log so far.
    pub fn server_log(&self) -> String {
        fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.server_log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(n);
        format!("--- server log (last {n} lines) ---\n{}", lines[start..].join("\n"))
    }

    /// Panics if the server log shows a crashed backend or a PANIC (invariant 7).
    pub fn assert_no_backend_crash(&self) {
        let log = self.server_log();
        for needle in ["terminated by signal", "was terminated by exception", "PANIC:", "server process (PID"] {
            if log.contains(needle) {
                panic!("the server log shows a crash (\"{needle}\"):\n{}", self.log_tail(60));
            }
        }
    }

    fn write_port(&mut self) {
        self.port = free_port();
        let (uid, gid) = run_user_ids();
        let path = self.dir.join("pg_hybrid_test_port.conf");
        fs::write(&path, format!("port = {}\n", self.port)).expect("write port file");
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown port file");
    }

    /// Starts the cluster (runs crash recovery if it was killed). Retries with another port if
    /// the chosen one was taken meanwhile.
    pub fn start(&mut self) {
        assert!(!self.running, "cluster already running");
        let mut last_err = String::new();
        for _ in 0..5 {
            if self.port == 0 || !last_err.is_empty() {
                self.write_port();
            }
            let out = pg_command("pg_ctl")
                // pgrx would append a Rust backtrace to every error's DETAIL.
                .env_remove("RUST_BACKTRACE")
                .arg("-D")
                .arg(&self.dir)
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "120", "start"])
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                self.running = true;
                return;
            }
            last_err = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(30)
            );
            if !last_err.contains("could not bind") && !last_err.contains("Address already in use") {
                break;
            }
        }
        panic!("pg_ctl start failed:\n{last_err}");
    }

    /// Stops the cluster cleanly (fast shutdown: sessions are disconnected).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let mut cmd = pg_command("pg_ctl");
        cmd.arg("-D").arg(&self.dir).args(["-m", "fast", "-w", "-t", "120", "stop"]);
        run(cmd, "pg_ctl stop");
        self.running = false;
    }

    /// Fast shutdown that must finish within `timeout`: returns how long it took, or the
    /// error if it did not (the cluster is then still considered running, and dropping it
    /// stops it immediately).
    pub fn stop_within(&mut self, timeout: Duration) -> Result<Duration, String> {
        assert!(self.running, "cluster not running");
        let started = Instant::now();
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "-t", &timeout.as_secs().max(1).to_string(), "stop"])
            .output()
            .expect("run pg_ctl stop");
        if out.status.success() {
            self.running = false;
            Ok(started.elapsed())
        } else {
            Err(format!(
                "pg_ctl stop -m fast did not finish within {timeout:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Clean stop, then start.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// `kill -9` of the postmaster and every process it started, then start again: the server
    /// runs crash recovery from the last checkpoint, as after a power cut of the database
    /// (the OS page cache survives, so this proves ordering, not fsync).
    pub fn kill9(&mut self) {
        assert!(self.running, "cluster not running");
        assert!(kill_postmaster_tree(&self.dir), "no postmaster to kill in {}", self.dir.display());
        self.running = false;
        self.start();
    }

    /// Whether the cluster was started (and not stopped) by this handle.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// A new cluster made from a copy of this one's data directory (which must be stopped),
    /// without the paths `exclude` (relative to the data directory; e.g. `pg_hybrid`, as a base
    /// backup that does not carry the index folders), started on another port. Ownership and
    /// permissions are kept. Same system identifier and WAL: a restored base backup.
    pub fn copy_stopped(&self, name: &str, exclude: &[&str]) -> TestCluster {
        assert!(!self.running, "stop the cluster before copying its data directory");
        let seq = CLUSTER_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}_{}_{}", name, std::process::id(), seq));
        let _ = fs::remove_dir_all(&dir);
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&self.dir).arg(&dir);
        run(cp, "copy the data directory");
        for e in exclude {
            let p = dir.join(e);
            if p.is_dir() {
                fs::remove_dir_all(&p).unwrap_or_else(|err| panic!("remove {}: {err}", p.display()));
            } else if p.exists() {
                fs::remove_file(&p).unwrap_or_else(|err| panic!("remove {}: {err}", p.display()));
            }
        }
        let _ = fs::remove_file(dir.join("postmaster.pid"));
        // A log of its own (the copy's would show the original's history).
        let _ = fs::write(dir.join("server.log"), b"");
        let mut c = TestCluster { dir, port: 0, running: false };
        c.start();
        c
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!("cluster {} (port {}):\n{}", self.dir.display(), self.port, self.log_tail(60));
        }
        if self.running {
            let _ = pg_command("pg_ctl")
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "immediate", "-w", "-t", "60", "stop"])
                .output();
            self.running = false;
        }
        let keep = failed && std::env::var_os("PG_HYBRID_KEEP_CLUSTERS").is_some();
        if keep {
            eprintln!("keeping {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGKILLs the postmaster of the cluster in `dir` (from its postmaster.pid, if that process is
/// a postmaster of this directory) and every process it started, and waits until they are gone.
/// Returns whether there was such a postmaster.
fn kill_postmaster_tree(dir: &Path) -> bool {
    let pid_file = dir.join("postmaster.pid");
    let Ok(pid_text) = fs::read_to_string(&pid_file) else { return false };
    let Some(pm) = pid_text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else { return false };
    // Guard against a recycled pid: the process must be a postmaster of this data directory.
    let cmdline = fs::read(format!("/proc/{pm}/cmdline")).map(|b| String::from_utf8_lossy(&b).into_owned());
    if !cmdline.map(|c| c.contains("postgres") && c.contains(&*dir.to_string_lossy())).unwrap_or(false) {
        return false;
    }
    // Freeze the postmaster so it cannot fork while we collect its children, then kill all.
    // SAFETY: sending signals to processes of our own cluster.
    unsafe { libc::kill(pm, libc::SIGSTOP) };
    let children = child_pids(pm);
    unsafe { libc::kill(pm, libc::SIGKILL) };
    for &c in &children {
        // SAFETY: as above.
        unsafe { libc::kill(c, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in std::iter::once(pm).chain(children.iter().copied()) {
        while process_alive(p) {
            assert!(Instant::now() < deadline, "process {p} survived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // A new postmaster refuses to start while the old pid exists, even as a zombie: wait for
    // init to reap it. Should it not, the lock file is stale (every process is dead).
    let reaped = wait_until(Duration::from_secs(10), || proc_state(pm).is_none());
    if !reaped {
        let _ = fs::remove_file(&pid_file);
    }
    true
}

/// Pids of the processes whose parent is `parent`.
fn child_pids(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some((_, ppid)) = proc_state(pid) {
            if ppid == parent {
                out.push(pid);
            }
        }
    }
    out
}

/// (state, ppid) of a process from /proc/<pid>/stat.
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether a process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// Every file and folder under `root` (recursively) whose permission bits let users other than
/// the owner read, write or enter it, with its mode.
pub fn too_open_paths(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else { continue };
        let mode = md.mode() & 0o7777;
        if mode & 0o077 != 0 {
            bad.push((p.clone(), mode));
        }
        if md.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    bad
}

/// Every path under `root` (recursively), including `root`.
pub fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else { continue };
        if md.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
        out.push(p);
    }
    out
}

/// Owner uid of a path.
pub fn owner_uid(p: &Path) -> u32 {
    fs::symlink_metadata(p).map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// uid of the cluster user.
pub fn run_user_uid() -> u32 {
    run_user_ids().0
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/// Words the generated text is made of: ordinary English, so that terms recur across rows.
/// None is a prefix-inflection of another (no "lamp"/"lamps"), so a word-boundary regex over
/// the table finds exactly the rows the (stemming) index should.
pub const WORDS: &[&str] = &[
    "apple",
    "harbor",
    "lantern",
    "meadow",
    "river",
    "copper",
    "violet",
    "quartz",
    "willow",
    "engine",
    "garden",
    "silver",
    "thunder",
    "pencil",
    "window",
    "castle",
    "forest",
    "island",
    "market",
    "orange",
    "planet",
    "rocket",
    "saddle",
    "tunnel",
    "valley",
    "wagon",
    "yellow",
    "anchor",
    "basket",
    "candle",
    "desert",
    "falcon",
    "glacier",
    "hammer",
    "jacket",
    "kettle",
    "ladder",
    "mirror",
    "needle",
    "oyster",
    "parrot",
    "rabbit",
    "salmon",
    "tiger",
    "umbrella",
    "velvet",
    "walnut",
    "zebra",
    "bridge",
    "cabin",
    "dolphin",
    "feather",
    "ginger",
    "honey",
    "iron",
    "jungle",
    "kitchen",
    "lemon",
    "marble",
    "nickel",
    "olive",
    "pepper",
    "quiet",
    "ribbon",
    "spider",
    "tomato",
    "uncle",
    "vessel",
    "whistle",
    "yogurt",
    "acorn",
    "blanket",
    "cactus",
    "donkey",
    "elbow",
    "fossil",
    "goblet",
    "helmet",
    "insect",
    "jigsaw",
    "koala",
    "lizard",
    "magnet",
    "napkin",
    "orchid",
    "peanut",
    "quill",
    "radish",
    "sponge",
    "turtle",
    "vacuum",
    "wizard",
    "button",
    "cotton",
    "diamond",
    "eagle",
    "fabric",
    "gravel",
    "horizon",
    "igloo",
    "jasmine",
    "kayak",
    "lobster",
    "mustard",
    "nutmeg",
    "ocean",
    "pillow",
    "raven",
    "shadow",
    "timber",
    "unicorn",
    "vendor",
    "walrus",
    "yacht",
    "almond",
    "bamboo",
    "cherry",
    "dragon",
    "emerald",
    "flute",
    "guitar",
    "hazel",
    "ivory",
    "jewel",
    "kiwi",
    "lilac",
    "mango",
    "nectar",
    "onion",
    "pumpkin",
    "quilt",
    "rhubarb",
    "saffron",
    "tulip",
    "vanilla",
    "wheat",
    "badger",
    "cobalt",
    "dune",
    "ember",
    "fjord",
    "granite",
    "hollow",
    "indigo",
    "juniper",
    "kelp",
    "lagoon",
    "mosaic",
    "nomad",
    "opal",
    "prairie",
    "quarry",
    "reef",
    "summit",
    "tundra",
    "upland",
    "volcano",
    "wharf",
    "zenith",
    "beacon",
    "compass",
    "drum",
    "easel",
    "fiddle",
    "gondola",
    "harp",
    "inkwell",
    "javelin",
    "keystone",
    "loom",
    "mallet",
    "oar",
    "paddle",
    "quiver",
    "rudder",
    "sextant",
    "trumpet",
    "urn",
    "vase",
    "wick",
    "biscuit",
    "crumb",
    "dough",
    "espresso",
    "fudge",
    "gravy",
    "hummus",
    "jam",
    "kale",
    "lentil",
    "muffin",
    "noodle",
    "oatmeal",
    "pretzel",
    "ravioli",
    "scone",
    "toffee",
    "waffle",
    "blizzard",
    "cyclone",
    "drizzle",
    "fog",
    "gale",
    "hail",
    "monsoon",
    "sleet",
    "breeze",
    "comet",
    "galaxy",
    "meteor",
    "nebula",
    "orbit",
    "pulsar",
    "quasar",
    "satellite",
    "telescope",
    "cathedral",
    "fortress",
    "palace",
    "temple",
    "villa",
    "cottage",
    "barn",
    "lighthouse",
    "windmill",
    "granary",
    "alpaca",
    "bison",
    "cheetah",
    "ferret",
    "gazelle",
    "hedgehog",
    "iguana",
    "jaguar",
    "lemur",
    "moose",
    "narwhal",
    "ocelot",
    "panther",
    "reindeer",
    "squirrel",
    "toucan",
    "vulture",
    "wombat",
    "yak",
    "brass",
    "chrome",
    "flint",
    "graphite",
    "jade",
    "lead",
    "mercury",
    "pewter",
    "ruby",
    "sapphire",
    "topaz",
    "zinc",
    "archer",
    "baker",
    "carpenter",
    "dancer",
    "farmer",
    "gardener",
    "hunter",
    "juggler",
    "knight",
    "miller",
    "painter",
    "sailor",
    "tailor",
    "weaver",
    "crimson",
    "scarlet",
    "amber",
    "azure",
    "beige",
    "cyan",
    "golden",
    "maroon",
    "navy",
    "teal",
    "turquoise",
    "brisk",
    "calm",
    "eager",
    "fierce",
    "gentle",
    "humble",
    "jolly",
    "lively",
    "mellow",
    "noble",
    "proud",
    "rapid",
    "sturdy",
    "tender",
    "vivid",
    "wild",
];

/// Words every generated body contains (a search for it must find every row).
pub const COMMON_WORD: &str = "common";

/// Words whose matches the tests compare against a regular expression over the table: each
/// is in [`WORDS`], and no other word of the list shares its first five letters, so stemming
/// cannot make the index and the regex disagree.
pub const ORACLE_WORDS: &[&str] = &["harbor", "lantern", "meadow", "quartz", "willow", "falcon", "glacier"];

/// A small deterministic PRNG (SplitMix64): reproducible text without extra dependencies.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A random element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// `n` random words from [`WORDS`], space-separated.
pub fn words(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| *rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
}

/// The unique token of row `id` (one term in the index: letters and digits).
pub fn token(id: i64) -> String {
    format!("tok{id}")
}

/// The body of row `id` (version `version`): a dozen words, the row's unique token and
/// [`COMMON_WORD`].
pub fn body_of(id: i64, version: u64) -> String {
    let mut rng = Rng::new((id as u64).wrapping_mul(1_000_003) ^ version.wrapping_mul(0x5851_F42D_4C95_7F2D));
    format!("{} {} {} {}", words(&mut rng, 6), token(id), words(&mut rng, 6), COMMON_WORD)
}

/// The title of row `id`.
pub fn title_of(id: i64) -> String {
    let mut rng = Rng::new((id as u64) ^ 0xDEAD_BEEF);
    words(&mut rng, 4)
}

// ---------------------------------------------------------------------------------------------
// The docs table
// ---------------------------------------------------------------------------------------------

/// The table the tests search.
pub const DOCS_TABLE: &str = "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text, lang text)";
/// Its hybrid index.
pub const DOCS_INDEX: &str = "CREATE INDEX docs_search ON docs USING hybrid (id, title, body) WITH (key_field = 'id')";

/// Creates `docs` and `docs_search`.
pub fn create_docs(c: &mut Client) {
    c.batch_execute(&format!("{DOCS_TABLE}; {DOCS_INDEX};")).expect("create docs and docs_search");
}

/// A `VALUES` list of generated rows (text from [`body_of`], which is SQL-safe).
pub fn values_sql(ids: &[i64], version: u64) -> String {
    ids.iter()
        .map(|&id| format!("({id}, '{}', '{}', 'en')", title_of(id), body_of(id, version)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts generated rows `ids` into `docs`, in statements of up to 500 rows, in the session's
/// current transaction (or autocommit per statement).
pub fn insert_docs(c: &mut Client, ids: &[i64]) {
    for chunk in ids.chunks(500) {
        c.batch_execute(&format!("INSERT INTO docs (id, title, body, lang) VALUES {}", values_sql(chunk, 0)))
            .expect("insert docs");
    }
}

/// Makes the session answer `@@@` through the index: sequential scans off.
pub fn force_index(c: &mut Client) {
    c.batch_execute("SET enable_seqscan = off").expect("set enable_seqscan");
}

/// Panics unless the plan of `select` uses the index `index` (index or bitmap scan).
pub fn assert_uses_index(c: &mut Client, select: &str, index: &str) {
    let plan: Vec<String> = c
        .query(&format!("EXPLAIN (COSTS OFF) {select}"), &[])
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let text = plan.join("\n");
    assert!(
        text.contains(index) && (text.contains("Index Scan") || text.contains("Bitmap Index Scan")),
        "expected a scan of {index} for `{select}`, got:\n{text}"
    );
}

/// How the executor reads a hybrid index: `amgettuple` or `amgetbitmap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// A plain index scan (`amgettuple`).
    Index,
    /// A bitmap index scan (`amgetbitmap`) feeding a bitmap heap scan.
    Bitmap,
}

impl ScanKind {
    /// Both kinds.
    pub const ALL: [ScanKind; 2] = [ScanKind::Index, ScanKind::Bitmap];

    /// The EXPLAIN node that shows this kind of scan of `index`.
    pub fn plan_node(self, index: &str) -> String {
        match self {
            ScanKind::Index => format!("Index Scan using {index}"),
            ScanKind::Bitmap => format!("Bitmap Index Scan on {index}"),
        }
    }
}

/// Makes the session answer `@@@` with this kind of scan only (sequential scans and the other
/// kind off).
pub fn set_scan_kind(c: &mut Client, kind: ScanKind) {
    let (index, bitmap) = match kind {
        ScanKind::Index => ("on", "off"),
        ScanKind::Bitmap => ("off", "on"),
    };
    c.batch_execute(&format!(
        "SET enable_seqscan = off; SET enable_indexscan = {index}; SET enable_bitmapscan = {bitmap}"
    ))
    .expect("set scan kind");
}

/// Runs `f` once with each kind of index scan, after checking with EXPLAIN that a search of
/// `docs` uses that kind of scan of `docs_search`. Leaves sequential scans off and both kinds on.
pub fn for_each_scan_kind(c: &mut Client, mut f: impl FnMut(&mut Client, ScanKind)) {
    for kind in ScanKind::ALL {
        set_scan_kind(c, kind);
        let plan = plan_of(c, "SELECT id FROM docs WHERE body @@@ 'common'");
        assert!(plan.contains(&kind.plan_node("docs_search")), "expected {kind:?} scan of docs_search, got:\n{plan}");
        f(c, kind);
    }
    c.batch_execute("SET enable_indexscan = on; SET enable_bitmapscan = on").expect("reset scan kinds");
}

/// Asserts that every scan kind finds exactly the rows `in_table` for the word every generated
/// row has; `when` ends the failure message (e.g. " after VACUUM").
pub fn assert_every_scan_kind_finds(c: &mut Client, in_table: &BTreeSet<i64>, when: &str) {
    for_each_scan_kind(c, |s, kind| {
        assert_eq!(&search_ids(s, COMMON_WORD), in_table, "{kind:?}: search and table disagree{when}");
    });
}

/// The EXPLAIN (COSTS OFF) text of `select`.
pub fn plan_of(c: &mut Client, select: &str) -> String {
    c.query(&format!("EXPLAIN (COSTS OFF) {select}"), &[])
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ids of `docs` rows whose body matches `query`, through the index (the caller has called
/// [`force_index`]).
pub fn search_ids(c: &mut Client, query: &str) -> BTreeSet<i64> {
    c.query("SELECT id FROM docs WHERE body @@@ $1", &[&query])
        .unwrap_or_else(|e| panic!("search {query:?}: {e}"))
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// `SELECT count(*)` of a query.
pub fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get::<_, i64>(0)
}

/// A set of i64 from the first column of `sql`.
pub fn id_set(c: &mut Client, sql: &str) -> BTreeSet<i64> {
    c.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get::<_, i64>(0)).collect()
}

/// What `hybrid.verify` says about an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verify {
    pub visible_rows: i64,
    pub index_entries: i64,
    pub missing: i64,
    pub gone: i64,
    pub not_visible: i64,
    pub ok: bool,
}

/// Runs `hybrid.verify(index)`.
pub fn verify(c: &mut Client, index: &str) -> Verify {
    let r = c
        .query_one(
            "SELECT visible_rows, index_entries, missing, gone, not_visible, ok FROM hybrid.verify($1::text::regclass)",
            &[&index],
        )
        .unwrap_or_else(|e| panic!("hybrid.verify({index}): {e}"));
    Verify {
        visible_rows: r.get(0),
        index_entries: r.get(1),
        missing: r.get(2),
        gone: r.get(3),
        not_visible: r.get(4),
        ok: r.get(5),
    }
}

/// Panics unless `hybrid.verify(index)` reports nothing missing and nothing gone.
pub fn assert_verify_ok(c: &mut Client, index: &str) -> Verify {
    let v = verify(c, index);
    assert!(v.ok && v.missing == 0 && v.gone == 0, "hybrid.verify({index}) failed: {v:?}");
    v
}

/// What `hybrid.index_info` says about an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    pub documents: i64,
    pub deleted_documents: i64,
    pub segments: i32,
    pub bytes: i64,
    pub directory: String,
    pub generation: i64,
}

/// Runs `hybrid.index_info(index)`.
pub fn index_info(c: &mut Client, index: &str) -> IndexInfo {
    let r = c
        .query_one(
            "SELECT documents, deleted_documents, segments, bytes, directory, generation FROM hybrid.index_info($1::text::regclass)",
            &[&index],
        )
        .unwrap_or_else(|e| panic!("hybrid.index_info({index}): {e}"));
    IndexInfo {
        documents: r.get(0),
        deleted_documents: r.get(1),
        segments: r.get(2),
        bytes: r.get(3),
        directory: r.get(4),
        generation: r.get(5),
    }
}

/// The SQLSTATE of a failed statement, or a panic if it did not fail with a database error.
pub fn sqlstate<T: std::fmt::Debug>(r: Result<T, postgres::Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, the statement succeeded: {v:?}"),
        Err(e) => match e.as_db_error() {
            Some(db) => db.code().code().to_string(),
            None => panic!("expected a database error, got: {e}"),
        },
    }
}

/// The relfilenode of a relation, which names its sidecar folder.
pub fn relfilenode(c: &mut Client, rel: &str) -> u32 {
    let r =
        c.query_one("SELECT pg_relation_filenode($1::text::regclass)::int8", &[&rel]).expect("pg_relation_filenode");
    r.get::<_, i64>(0) as u32
}

/// Polls `f` until it returns true or `timeout` passes; returns the last result.
/// The most segments an index of `docs` live documents can have once the tiered merge policy
/// (`MergePolicy` of the engine: tiers by powers of 8 of live documents) has nothing left to
/// merge: each tier holds fewer than `merge_factor` segments (a tier that reaches it is merged),
/// and a segment of n documents is in tier floor(log8 n), so the tiers are 0 ..= floor(log8
/// docs). For 4,096 to 32,767 documents and a merge factor of 8: 5 tiers of at most 7, 35.
pub fn settled_segment_bound(docs: i64, merge_factor: usize) -> usize {
    let tiers = ((docs.max(1) as f64).ln() / 8f64.ln()).floor() as usize + 1;
    (merge_factor - 1) * tiers
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A function that inserts rows from `first` on, each in its own transaction, pushing the id
/// of every committed row to `recorded`, until `stop` or an error (returned).
pub type Writer = fn(
    String,
    i64,
    std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Option<String>;

/// Runs three `writer`s against the cluster until they committed `min_rows` rows, then kills
/// the postmaster with SIGKILL mid-stream. Returns the ids whose commit was acknowledged.
pub fn kill9_during_writes(cluster: &mut TestCluster, writer: Writer, min_rows: usize) -> Vec<i64> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=3i64)
        .map(|w| {
            let (conn, rec, stop) = (cluster.conn_str(TEST_DB), recorded.clone(), stop.clone());
            std::thread::spawn(move || writer(conn, w * 1_000_000, rec, stop))
        })
        .collect();
    let reached = wait_until(Duration::from_secs(120), || recorded.lock().unwrap().len() >= min_rows);
    if !reached {
        stop.store(true, Ordering::SeqCst);
    }
    assert!(reached, "writers committed only {} rows in 120 s", recorded.lock().unwrap().len());
    cluster.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        assert!(w.join().expect("writer thread").is_some(), "a writer should have lost its connection at the crash");
    }
    let recorded = recorded.lock().unwrap().clone();
    eprintln!("{} rows committed before the crash", recorded.len());
    recorded
}

/// Asserts that every path under the cluster's index folders is private to the server user
/// (no access for group or others) and owned by it; `expect` checks the list of paths first.
pub fn assert_sidecar_private(cluster: &TestCluster, expect: impl FnOnce(&[PathBuf])) {
    let base = cluster.sidecar_base();
    let paths = all_paths(&base);
    expect(&paths);
    let too_open = too_open_paths(&base);
    assert!(too_open.is_empty(), "sidecar paths readable or writable by other users: {too_open:?}");
    let uid = run_user_uid();
    let foreign: Vec<_> = paths.iter().filter(|p| owner_uid(p) != uid).collect();
    assert!(foreign.is_empty(), "sidecar paths not owned by the server user: {foreign:?}");
    cluster.assert_no_backend_crash();
}

/// Cosine distance computed in f64 from the definition (1 - cos), for checking the index's.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    1.0 - (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_words_cannot_collide_by_stemming() {
        for w in ORACLE_WORDS {
            assert!(WORDS.contains(w), "{w} is not in WORDS");
            let stem = &w[..5];
            let sharing: Vec<_> = WORDS.iter().filter(|x| x.starts_with(stem)).collect();
            assert_eq!(sharing, vec![w], "{w} shares its stem with another word");
        }
        let unique: BTreeSet<_> = WORDS.iter().collect();
        assert_eq!(unique.len(), WORDS.len(), "WORDS has duplicates");
        assert!(!WORDS.contains(&COMMON_WORD));
    }

    #[test]
    fn generated_text_is_deterministic_and_sql_safe() {
        assert_eq!(body_of(7, 0), body_of(7, 0));
        assert_ne!(body_of(7, 0), body_of(7, 1));
        assert!(body_of(7, 0).contains("tok7 "));
        assert!(body_of(7, 0).chars().all(|c| c.is_ascii_alphanumeric() || c == ' '));
    }
}
