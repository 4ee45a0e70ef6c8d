//! S3 for the snapshot tests: a moto server on loopback ([`MotoServer`]), a fault-injecting TCP
//! proxy in front of it that the clusters talk to ([`Proxy`]), and a tiny S3 client over std's
//! `TcpStream` ([`S3Client`]) with which tests look into the bucket and damage objects.
//!
//! moto (`pip install 'moto[server]'`) is found through the environment variable
//! [`MOTO_SERVER_ENV`] (a path), else as `moto_server` on `PATH`. Without it the tests that need
//! it fail (they do not skip): a suite that silently skips its object-store tests proves nothing.
//!
//! Why a proxy: moto keeps everything in memory, so killing it loses the bucket. To see what a
//! server that died in the middle of an upload leaves behind, the proxy instead cuts every
//! connection (and refuses new ones) after a chosen number of request bytes, while moto keeps
//! its objects for the test to inspect. [`MotoServer::kill_now`] is the real thing (SIGKILL of
//! moto; its objects are lost) and [`MotoServer::restart`] starts it again on the same port with
//! an empty bucket. The proxy can also hold requests (a store that stops answering).
//!
//! The client sends a syntactically valid but unsigned `Authorization` header: moto does not
//! check signatures, but treats requests without any credentials as anonymous and refuses them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable naming the `moto_server` executable (CI installs moto into a venv).
pub const MOTO_SERVER_ENV: &str = "MOTO_SERVER";
/// Credentials the clusters use (moto accepts any).
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";
pub const REGION: &str = "us-east-1";

/// The `moto_server` executable: `$MOTO_SERVER`, else `moto_server` on `PATH`. Panics with
/// instructions if there is none.
pub fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(MOTO_SERVER_ENV) {
        let p = PathBuf::from(p);
        assert!(is_executable(&p), "{MOTO_SERVER_ENV} is set to {}, which is not an executable file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("moto_server");
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "moto_server was not found: these tests need an S3 server on loopback. Install it with \
         `pip install 'moto[server]'` (or into a venv and set {MOTO_SERVER_ENV}=/path/to/venv/bin/moto_server)"
    );
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A moto S3 server with one bucket, behind a [`Proxy`]. Killed (with its process group) when
/// dropped.
pub struct MotoServer {
    bin: PathBuf,
    port: u16,
    bucket: String,
    child: Option<Child>,
    log: PathBuf,
    proxy: Proxy,
}

impl MotoServer {
    /// Starts moto on a free loopback port, waits until it answers, creates `bucket`, and
    /// starts the proxy in front of it.
    pub fn start(bucket: &str) -> MotoServer {
        let bin = moto_binary();
        let log = std::env::temp_dir().join(format!("pg_hybrid_moto_{}_{}.log", std::process::id(), free_port()));
        let port = free_port();
        let mut m = MotoServer { bin, port, bucket: bucket.to_string(), child: None, log, proxy: Proxy::start(port) };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the moto log");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            // Its own process group, so that kill_now and Drop end whatever the launcher
            // script (a pyenv shim, a venv wrapper) started.
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("could not start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok((status, _, _)) = self.client().request("GET", "/", &[]) {
                if status < 500 {
                    break;
                }
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("moto_server exited at start ({st}):\n{}", self.log_tail(30));
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {} within 60 s:\n{}",
                self.port,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, _, body) = self.client().request("PUT", &format!("/{}", self.bucket), &[]).expect("create bucket");
        assert!(status == 200, "creating bucket {} answered {status}: {}", self.bucket, String::from_utf8_lossy(&body));
    }

    /// The endpoint the clusters use (`hybrid.s3_endpoint`): the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.port())
    }

    /// moto's own port (the test's client talks to it directly, past the proxy).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The `postgresql.conf` lines that point a cluster's snapshots at `s3://<bucket>/<prefix>`.
    pub fn settings(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("hybrid.snapshot_url = '{}'", self.url(prefix)),
            format!("hybrid.s3_endpoint = '{}'", self.endpoint()),
            "hybrid.s3_allow_http = on".to_string(),
            format!("hybrid.s3_region = '{REGION}'"),
            format!("hybrid.s3_access_key_id = '{ACCESS_KEY}'"),
            format!("hybrid.s3_secret_access_key = '{SECRET_KEY}'"),
        ]
    }

    /// A client of the bucket, straight to moto.
    pub fn client(&self) -> S3Client {
        S3Client { port: self.port, bucket: self.bucket.clone() }
    }

    /// The proxy in front of moto.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// SIGKILLs moto (and its process group) at once, as a server that dies. Its objects are
    /// lost (moto keeps them in memory). Connections through the proxy fail from now on.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: signalling the process group of a child this fixture started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts moto again on the same port (after [`MotoServer::kill_now`]), with an empty
    /// bucket of the same name.
    pub fn restart(&mut self) {
        self.kill_now();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port must be free again (the old process's socket is gone with it).
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} of the killed moto is still taken", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }

    /// Whether moto is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The last `n` lines of moto's log (one line per request).
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("moto log ({}), last lines:\n{}", self.log.display(), self.log_tail(30));
        }
        self.kill_now();
        self.proxy.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does once the request bytes it forwarded reach a threshold
/// ([`Proxy::trip_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// Cut every connection and refuse new ones, as a server that died (until
    /// [`Proxy::resume`]). The threshold byte is the last one the server receives.
    Cut,
    /// Stop forwarding request bytes (a server that stopped reading), until
    /// [`Proxy::release`].
    Hold,
}

struct ProxyState {
    upstream: u16,
    stop: AtomicBool,
    /// Refusing: new connections are closed at once; existing ones were cut.
    down: AtomicBool,
    /// Request bytes are not forwarded.
    held: AtomicBool,
    /// Request bytes forwarded (client to server), over all connections.
    bytes_up: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
    trip: Mutex<Option<(u64, Trip)>>,
    tripped: AtomicBool,
    /// Both ends of every open connection, to cut them.
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
}

impl ProxyState {
    fn cut_all(&self) {
        self.down.store(true, Ordering::SeqCst);
        for (a, b) in self.open.lock().unwrap().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

/// A TCP proxy on a loopback port in front of moto, able to cut or stall traffic.
pub struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(ProxyState {
            upstream,
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            held: AtomicBool::new(false),
            bytes_up: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            trip: Mutex::new(None),
            tripped: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, st));
        Proxy { port, state, accept: Some(accept) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Request bytes forwarded so far.
    pub fn bytes_up(&self) -> u64 {
        self.state.bytes_up.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Arms a trip: once `bytes` more request bytes than now have been forwarded, do `what`.
    pub fn trip_after(&self, bytes: u64, what: Trip) {
        self.state.tripped.store(false, Ordering::SeqCst);
        *self.state.trip.lock().unwrap() = Some((self.bytes_up() + bytes, what));
    }

    /// Whether the armed trip happened.
    pub fn tripped(&self) -> bool {
        self.state.tripped.load(Ordering::SeqCst)
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.state.cut_all();
    }

    /// Accepts and forwards connections again (after a cut), and disarms any trip.
    pub fn resume(&self) {
        *self.state.trip.lock().unwrap() = None;
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Stops forwarding request bytes (requests stall; connections stay open).
    pub fn hold(&self) {
        self.state.held.store(true, Ordering::SeqCst);
    }

    /// Forwards request bytes again.
    pub fn release(&self) {
        self.state.held.store(false, Ordering::SeqCst);
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.held.store(false, Ordering::SeqCst);
        self.state.cut_all();
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, st: Arc<ProxyState>) {
    for client in listener.incoming() {
        if st.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        st.accepted.fetch_add(1, Ordering::SeqCst);
        if st.down.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], st.upstream)),
            Duration::from_secs(2),
        ) else {
            drop(client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) =
            (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
        else {
            continue;
        };
        st.open.lock().unwrap().push((c3, s3));
        let up = st.clone();
        std::thread::spawn(move || pump_up(client, server, up));
        std::thread::spawn(move || pump_down(s2, c2));
    }
}

/// Client to server, counting, tripping and holding.
fn pump_up(mut client: TcpStream, mut server: TcpStream, st: Arc<ProxyState>) {
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            while st.held.load(Ordering::SeqCst) && !st.down.load(Ordering::SeqCst) && !st.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if st.down.load(Ordering::SeqCst) || st.stop.load(Ordering::SeqCst) {
                break 'conn;
            }
            // Forward up to the trip point, then trip.
            let mut take = chunk.len();
            let mut trip_now = None;
            {
                let mut trip = st.trip.lock().unwrap();
                if let Some((at, what)) = *trip {
                    let sent = st.bytes_up.load(Ordering::SeqCst);
                    if sent + take as u64 >= at {
                        take = at.saturating_sub(sent) as usize;
                        trip_now = Some(what);
                        *trip = None;
                    }
                }
                // Reserved under the lock, so that concurrent connections trip exactly once.
                st.bytes_up.fetch_add(take as u64, Ordering::SeqCst);
            }
            if server.write_all(&chunk[..take]).is_err() {
                break 'conn;
            }
            chunk = &chunk[take..];
            match trip_now {
                Some(Trip::Cut) => {
                    st.tripped.store(true, Ordering::SeqCst);
                    st.cut_all();
                    break 'conn;
                }
                Some(Trip::Hold) => {
                    st.held.store(true, Ordering::SeqCst);
                    st.tripped.store(true, Ordering::SeqCst);
                }
                None => {}
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// Server to client.
fn pump_down(mut server: TcpStream, mut client: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// An object of a listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// A minimal S3 client (path-style, HTTP/1.1, one connection per request) for one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    port: u16,
    bucket: String,
}

/// Percent-encodes `s` for a URL path (keeping `/`) or, with `query`, for a query value.
fn encode(s: &str, query: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (!query && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The text of each `<tag>...</tag>` in `xml`, in order.
fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn decode_chunked(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else { break };
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        body = &body[eol + 2..];
        if size == 0 || body.len() < size {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[(size + 2).min(body.len())..];
    }
    out
}

impl S3Client {
    /// One HTTP request to moto: (status, headers (lowercase names), body).
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_write_timeout(Some(Duration::from_secs(60)))?;
        let head = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
             x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP header in the answer"));
        };
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 =
            lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad status line in {head:?}"))
            })?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
            body = decode_chunked(&body);
        } else if let Some(len) =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok())
        {
            if method != "HEAD" {
                body.truncate(len);
            }
        }
        Ok((status, headers, body))
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, encode(key, false))
    }

    /// Every object whose key starts with `prefix`, sorted by key.
    pub fn list(&self, prefix: &str) -> Vec<Object> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("/{}?list-type=2&max-keys=1000&prefix={}", self.bucket, encode(prefix, true));
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={}", encode(t, true)));
            }
            let (status, _, body) = self.request("GET", &q, &[]).unwrap_or_else(|e| panic!("list {prefix}: {e}"));
            let xml = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "list {prefix}: {xml}");
            for c in xml_all(&xml, "Contents") {
                let key = xml_unescape(xml_all(c, "Key").first().copied().unwrap_or_default());
                let size = xml_all(c, "Size").first().and_then(|s| s.parse().ok()).unwrap_or(0);
                out.push(Object { key, size });
            }
            let truncated = xml_all(&xml, "IsTruncated").first().is_some_and(|t| *t == "true");
            token = xml_all(&xml, "NextContinuationToken").first().map(|t| xml_unescape(t));
            if !truncated || token.is_none() {
                break;
            }
        }
        out.sort();
        out
    }

    /// The object's bytes, or `None` if it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (status, _, body) =
            self.request("GET", &self.object_path(key), &[]).unwrap_or_else(|e| panic!("get {key}: {e}"));
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("get {key}: status {other}: {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Whether the object exists.
    pub fn exists(&self, key: &str) -> bool {
        let (status, _, _) =
            self.request("HEAD", &self.object_path(key), &[]).unwrap_or_else(|e| panic!("head {key}: {e}"));
        match status {
            200 => true,
            404 => false,
            other => panic!("head {key}: status {other}"),
        }
    }

    /// Writes the object (overwriting).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let (status, _, body) =
            self.request("PUT", &self.object_path(key), bytes).unwrap_or_else(|e| panic!("put {key}: {e}"));
        assert_eq!(status, 200, "put {key}: {}", String::from_utf8_lossy(&body));
    }

    /// Deletes the object (no error if missing).
    pub fn delete(&self, key: &str) {
        let (status, _, body) =
            self.request("DELETE", &self.object_path(key), &[]).unwrap_or_else(|e| panic!("delete {key}: {e}"));
        assert!(status == 204 || status == 200, "delete {key}: {status} {}", String::from_utf8_lossy(&body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_parses() {
        assert_eq!(encode("a b/c", false), "a%20b/c");
        assert_eq!(encode("a/b", true), "a%2Fb");
        let xml = "<R><Contents><Key>a&amp;b</Key><Size>3</Size></Contents><Contents><Key>c</Key><Size>4</Size></Contents></R>";
        let c = xml_all(xml, "Contents");
        assert_eq!(c.len(), 2);
        assert_eq!(xml_unescape(xml_all(c[0], "Key")[0]), "a&b");
        assert_eq!(decode_chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
