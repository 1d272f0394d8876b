//! `-listen ADDR`: a small HTTP server for watching and steering a running job from this
//! machine — `GET /metrics` (Prometheus), `GET /status` (JSON), `POST /control` (pause,
//! resume, cancel, concurrency, bwlimit). Any command that runs the engine adds it with one
//! call, [`start`], given the job's [`Live`] view; the returned [`Listener`] serves until it
//! is dropped.
//!
//! It is `tiny_http` on threads of its own, synchronous and without tokio (the lean build
//! must not link an async HTTP stack), and it only reads atomics and briefly held locks, so
//! it never waits behind block I/O. It binds loopback or a Unix socket; any other address
//! needs a token file, and then every request must carry `Authorization: Bearer <token>`
//! (compared in constant time). The job also leaves a small file with its address under
//! `$XDG_RUNTIME_DIR/keepmover/` (else the temp dir) for `keepmover status` to find, removed
//! at exit. Tokens never appear in the file, the logs, `/status` or `/metrics`.

use std::io::Read as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::mover::StopReason;
use crate::report::status::Live;
use crate::report::{log_line, metrics};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    /// `127.0.0.1:9100`, `[::1]:0`, `localhost:9100`, `unix:/path`; a host name is resolved
    /// (its first address is used).
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, e.g. unix:/run/keepmover.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let mut addrs = text
            .to_socket_addrs()
            .map_err(|e| format!("{text}: {e} (expected HOST:PORT or unix:/path)"))?;
        addrs
            .next()
            .map(ListenAddr::Tcp)
            .ok_or_else(|| format!("{text}: resolves to no address"))
    }

    /// Unix sockets and loopback addresses reach only this machine.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

/// `-listen` and `-listen-token-file`, checked.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    pub addr: ListenAddr,
    /// Required on every request when set.
    pub token: Option<String>,
    /// How long to keep serving after the job ends (so a scraper sees the final counters);
    /// a `cancel` request ends the wait.
    pub linger: Duration,
}

/// Reads a token file: its first line, trimmed; an empty token is refused.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{}: the token file is empty", path.display()));
    }
    Ok(token)
}

/// What `keepmover status` finds in the runtime directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFile {
    pub pid: u32,
    /// `127.0.0.1:9100`, `[::1]:9100` or `unix:/path`.
    pub address: String,
    pub command: String,
    pub started_unix_s: f64,
    /// Whether requests need the token (never the token itself).
    pub token_required: bool,
}

/// Where run files live: `$XDG_RUNTIME_DIR/keepmover`, else `<temp>/keepmover-<uid>`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("keepmover"),
        None => {
            use std::os::unix::fs::MetadataExt as _;
            let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
            std::env::temp_dir().join(format!("keepmover-{uid}"))
        }
    }
}

/// Whether a process is alive (its `/proc` entry exists).
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The running jobs' run files (those whose process is gone are left out).
pub fn running_jobs() -> Vec<RunFile> {
    let Ok(entries) = std::fs::read_dir(runtime_dir()) else {
        return Vec::new();
    };
    let mut jobs: Vec<RunFile> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<RunFile>(&bytes).ok())
        .filter(|job| process_alive(job.pid))
        .collect();
    jobs.sort_by_key(|j| j.pid);
    jobs
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("-listen {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error("starting the -listen thread: {0}")]
    Thread(std::io::Error),
}

/// A running endpoint; stops serving, and removes its run file and socket, when dropped.
pub struct Listener {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    address: String,
    run_file: Option<PathBuf>,
    socket: Option<PathBuf>,
    live: Live,
}

impl Listener {
    /// `127.0.0.1:PORT` (the bound port, also for `:0`) or `unix:/path`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Keeps serving for up to `linger` after the job ended, or until a `cancel` request.
    pub fn linger(&self, linger: Duration) {
        let until = std::time::Instant::now() + linger;
        while std::time::Instant::now() < until && !self.live.control.is_stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for path in [self.run_file.take(), self.socket.take()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds `options.addr`, serves the job seen through `live` on a thread of its own, and
/// writes the run file. The one call a command makes to offer the endpoint.
pub fn start(options: &ListenOptions, live: Live) -> Result<Listener, ListenError> {
    let bind_error = |message: String| ListenError::Bind {
        addr: match &options.addr {
            ListenAddr::Tcp(a) => a.to_string(),
            ListenAddr::Unix(p) => format!("unix:{}", p.display()),
        },
        message,
    };
    let (server, address, socket) = match &options.addr {
        ListenAddr::Tcp(addr) => {
            let listener = tcp_listener(*addr).map_err(|e| bind_error(e.to_string()))?;
            let server = tiny_http::Server::from_listener(listener, None)
                .map_err(|e| bind_error(e.to_string()))?;
            let bound = server.server_addr().to_ip().unwrap_or(*addr);
            (server, bound.to_string(), None)
        }
        ListenAddr::Unix(path) => {
            if path.exists() {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(bind_error("another process is listening there".into()));
                }
                // A socket left by a job that died: nobody answers on it.
                std::fs::remove_file(path).map_err(|e| bind_error(e.to_string()))?;
            }
            let server =
                tiny_http::Server::http_unix(path).map_err(|e| bind_error(e.to_string()))?;
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            (
                server,
                format!("unix:{}", path.display()),
                Some(path.clone()),
            )
        }
    };
    let server = Arc::new(server);
    let handler = Handler {
        live: live.clone(),
        token: options.token.clone(),
    };
    let thread = {
        let server = server.clone();
        std::thread::Builder::new()
            .name("keepmover-listen".into())
            .spawn(move || {
                // `recv` fails once `unblock` is called (or the listener broke): then stop.
                while let Ok(request) = server.recv() {
                    handler.handle(request);
                }
            })
            .map_err(ListenError::Thread)?
    };
    let run_file = write_run_file(&RunFile {
        pid: std::process::id(),
        address: address.clone(),
        command: live.job.command.clone(),
        started_unix_s: live.board.started_unix_s(),
        token_required: options.token.is_some(),
    });
    log_line(&format!(
        "Listening on {address} (GET /metrics, GET /status, POST /control)"
    ));
    Ok(Listener {
        server,
        thread: Some(thread),
        address,
        run_file,
        socket,
        live,
    })
}

/// A listening socket with TCP_NODELAY, which the connections it accepts inherit: tiny_http
/// writes a response's head and body separately, and without it the body waits for the
/// client's delayed ACK of the head (measured: 40 ms per request on a kept-alive
/// connection, as a Prometheus scraper keeps them).
fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// Writes `<runtime dir>/<pid>.json` (private directory); `None` if it cannot (the job
/// runs on; only `keepmover status` without an address will not find it).
fn write_run_file(run: &RunFile) -> Option<PathBuf> {
    let dir = runtime_dir();
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode_private()
        .create(&dir);
    if let Err(e) = made {
        log_line(&format!("-listen: cannot create {}: {e}", dir.display()));
        return None;
    }
    let path = dir.join(format!("{}.json", run.pid));
    let text = serde_json::to_string(run).ok()?;
    // Written aside and renamed into place: `keepmover status` (and tests) may read the
    // directory at any moment and must never see half a file. The temporary name does not
    // end in `.json`, so listings skip it.
    let partial = dir.join(format!("{}.json.partial", run.pid));
    let written =
        std::fs::write(&partial, text + "\n").and_then(|()| std::fs::rename(&partial, &path));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            log_line(&format!("-listen: cannot write {}: {e}", path.display()));
            None
        }
    }
}

trait PrivateDir {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDir for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt as _;
        self.mode(0o700)
    }
}

/// Largest control request body read.
const MAX_BODY: u64 = 64 << 10;

struct Handler {
    live: Live,
    token: Option<String>,
}

/// A response: status, content type, body.
type Reply = (u16, &'static str, String);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

fn json_error(status: u16, message: &str) -> Reply {
    (
        status,
        JSON,
        serde_json::json!({ "error": message }).to_string() + "\n",
    )
}

impl Handler {
    fn handle(&self, mut request: tiny_http::Request) {
        let reply = self.reply(&mut request);
        let (status, content_type, body) = reply;
        // One Content-Length body, never chunked (tiny_http chunks bodies past 32 KiB, a
        // /metrics of a big cluster, into many small writes).
        let mut response = tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_chunked_threshold(usize::MAX);
        if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
            response = response.with_header(header);
        }
        if status == 401 {
            if let Ok(header) = tiny_http::Header::from_bytes("WWW-Authenticate", "Bearer") {
                response = response.with_header(header);
            }
        }
        // The client may have gone; nothing to do about it.
        let _ = request.respond(response);
    }

    fn authorized(&self, request: &tiny_http::Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    }

    fn reply(&self, request: &mut tiny_http::Request) -> Reply {
        if !self.authorized(request) {
            return json_error(401, "this endpoint needs Authorization: Bearer <token>");
        }
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let method = request.method().clone();
        use tiny_http::Method::{Get, Head, Post};
        match (path.as_str(), &method) {
            ("/metrics", Get | Head) => (200, metrics::CONTENT_TYPE, metrics::render(&self.live)),
            ("/status", Get | Head) => match serde_json::to_string_pretty(&self.live.status()) {
                Ok(text) => (200, JSON, text + "\n"),
                Err(e) => json_error(500, &e.to_string()),
            },
            ("/control", Post) => {
                let mut body = Vec::new();
                if let Err(e) = request
                    .as_reader()
                    .take(MAX_BODY + 1)
                    .read_to_end(&mut body)
                {
                    return json_error(400, &format!("reading the request body: {e}"));
                }
                if body.len() as u64 > MAX_BODY {
                    return json_error(413, "request body too large");
                }
                match apply_control(&self.live, &body) {
                    Ok(done) => (
                        200,
                        JSON,
                        serde_json::json!({
                            "ok": true,
                            "done": done,
                            "phase": crate::report::status::phase_name(self.live.phase()),
                            "limits": self.live.limits(),
                        })
                        .to_string()
                            + "\n",
                    ),
                    Err(message) => json_error(400, &message),
                }
            }
            ("/", Get | Head) => (
                200,
                TEXT,
                "keepmover: GET /metrics, GET /status, POST /control {\"action\":\"pause|resume|cancel|concurrency|bwlimit\",\"value\":...}\n".into(),
            ),
            ("/metrics" | "/status" | "/control" | "/", _) => {
                json_error(405, &format!("{method} is not allowed on {path}"))
            }
            _ => json_error(404, &format!("no such endpoint: {path}")),
        }
    }
}

/// A bandwidth limit as [`crate::units::parse_bwlimit`] reads it, as (down, up), with the
/// reason when it cannot be read.
pub fn parse_bwlimit(text: &str) -> Result<(u64, u64), String> {
    crate::units::parse_bwlimit(text).ok_or_else(|| {
        format!("bwlimit {text:?}: expected a rate such as 10MiB, 0 (off) or UP:DOWN")
    })
}

/// Applies one control request: `{"action":"pause"}`, `resume`, `cancel`,
/// `{"action":"concurrency","value":N}`, `{"action":"bwlimit","value":"10MiB"|"UP:DOWN"}`.
/// Returns what was done, in words.
pub fn apply_control(live: &Live, body: &[u8]) -> Result<String, String> {
    let request: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let action = request
        .get("action")
        .and_then(|a| a.as_str())
        .ok_or("bad request: expected {\"action\": \"pause|resume|cancel|concurrency|bwlimit\"}")?;
    let value = request.get("value");
    let control = &live.control;
    match action {
        "pause" => {
            if control.is_stopping() {
                return Err("the job is stopping; it cannot be paused".into());
            }
            control.pause();
            Ok("paused: no new blocks start; blocks in flight finish".into())
        }
        "resume" => {
            control.resume();
            Ok("resumed".into())
        }
        "cancel" => {
            let over = live.board.phase() == crate::mover::events::Phase::Done;
            control.stop(StopReason::Terminated);
            Ok(if over {
                "the job had already ended; it stops serving and exits with its own code".into()
            } else {
                "cancelling: blocks in flight finish, the checkpoint is saved, exit 143".into()
            })
        }
        "concurrency" => {
            let n = value
                .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
                .filter(|&n| n <= 65_536)
                .ok_or("concurrency needs \"value\": a whole number of blocks in flight per worker, 1 to 65536 (0 = back to the configured value)")?;
            // A worker has -concurrency lanes; the live value can lower it, not raise it.
            let configured = live.job.concurrency;
            let n = n as usize;
            control.set_concurrency(n.min(configured));
            let now = control.concurrency(configured);
            Ok(if n > configured {
                format!("concurrency {now} per worker (the most: -concurrency {configured})")
            } else {
                format!("concurrency {now} per worker")
            })
        }
        "bwlimit" if live.job.command == "touch" => {
            Err("touch moves no block data: there is no bandwidth to limit".into())
        }
        "bwlimit" => {
            let (down, up) =
                match value {
                    Some(serde_json::Value::String(text)) => parse_bwlimit(text)?,
                    Some(serde_json::Value::Number(n)) => {
                        let rate = n
                            .as_u64()
                            .ok_or("bwlimit: a number value must be whole bytes per second")?;
                        (rate, 0)
                    }
                    _ => return Err(
                        "bwlimit needs \"value\": a rate such as \"10MiB\", \"UP:DOWN\" or 0 (off)"
                            .into(),
                    ),
                };
            control.set_bwlimit(down, up);
            Ok(format!("bwlimit up {up} B/s, down {down} B/s (0 = off)"))
        }
        other => Err(format!(
            "unknown action {other:?}: expected pause, resume, cancel, concurrency or bwlimit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mover::{Control, Counters};
    use crate::report::status::JobInfo;

    fn live() -> Live {
        Live::new(
            JobInfo {
                command: "copy".into(),
                concurrency: 32,
                workers: 1,
                ..JobInfo::default()
            },
            Arc::new(Counters::default()),
            Arc::new(Control::new()),
        )
    }

    #[test]
    fn addresses() {
        assert!(ListenAddr::parse("127.0.0.1:9100").expect("ok").is_local());
        assert!(ListenAddr::parse("[::1]:0").expect("ok").is_local());
        assert!(ListenAddr::parse("localhost:0").expect("ok").is_local());
        assert!(ListenAddr::parse("unix:/tmp/x.sock")
            .expect("ok")
            .is_local());
        assert!(!ListenAddr::parse("0.0.0.0:9100").expect("ok").is_local());
        assert!(!ListenAddr::parse("192.0.2.1:9100").expect("ok").is_local());
        assert!(ListenAddr::parse("unix:").is_err());
        assert!(ListenAddr::parse("nonsense").is_err());
    }

    #[test]
    fn bwlimits() {
        assert_eq!(parse_bwlimit("10MiB"), Ok((10 << 20, 0)));
        assert_eq!(parse_bwlimit("1MiB/s:2MiB/s"), Ok((2 << 20, 1 << 20)));
        assert_eq!(parse_bwlimit("0"), Ok((0, 0)));
        assert!(parse_bwlimit("fast").is_err());
    }

    #[test]
    fn control_requests() {
        let live = live();
        let c = &live.control;
        apply_control(&live, br#"{"action":"pause"}"#).expect("pause");
        assert!(c.is_paused());
        apply_control(&live, br#"{"action":"resume"}"#).expect("resume");
        assert!(!c.is_paused());
        apply_control(&live, br#"{"action":"concurrency","value":1}"#).expect("concurrency");
        assert_eq!(c.concurrency(32), 1);
        let said = apply_control(&live, br#"{"action":"concurrency","value":99}"#).expect("99");
        assert_eq!(c.concurrency(32), 32, "no more lanes than -concurrency");
        assert!(said.contains("the most: -concurrency 32"), "{said}");
        apply_control(&live, br#"{"action":"bwlimit","value":"1MiB:2MiB"}"#).expect("bw");
        assert_eq!((c.bw_out.rate(), c.bw_in.rate()), (1 << 20, 2 << 20));
        apply_control(&live, br#"{"action":"bwlimit","value":0}"#).expect("bw off");
        assert_eq!((c.bw_out.rate(), c.bw_in.rate()), (0, 0));
        let err = apply_control(&live, b"{nope").expect_err("bad json");
        assert!(err.starts_with("bad JSON: "), "{err}");
        let err = apply_control(&live, br#"{"action":"explode"}"#).expect_err("unknown");
        assert!(err.contains("unknown action \"explode\""), "{err}");
        let err = apply_control(&live, br#"{"action":"concurrency","value":-1}"#).expect_err("neg");
        assert!(err.contains("whole number"), "{err}");
        apply_control(&live, br#"{"action":"cancel"}"#).expect("cancel");
        assert_eq!(c.stop_reason(), Some(StopReason::Terminated));
        assert!(apply_control(&live, br#"{"action":"pause"}"#).is_err());
    }

    #[test]
    fn serves_and_checks_the_token_over_a_unix_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("km.sock");
        let listener = start(
            &ListenOptions {
                addr: ListenAddr::Unix(sock.clone()),
                token: Some("s3cret".into()),
                linger: Duration::ZERO,
            },
            live(),
        )
        .expect("listens");
        assert_eq!(listener.address(), format!("unix:{}", sock.display()));
        let ask = |request: &str| {
            use std::io::Write as _;
            let mut stream = std::os::unix::net::UnixStream::connect(&sock).expect("connects");
            stream.write_all(request.as_bytes()).expect("writes");
            let mut reply = String::new();
            stream.read_to_string(&mut reply).expect("reads");
            reply
        };
        let denied = ask("GET /status HTTP/1.0\r\n\r\n");
        assert!(denied.starts_with("HTTP/1.0 401"), "{denied}");
        assert!(!denied.contains("s3cret"));
        let wrong = ask("GET /status HTTP/1.0\r\nAuthorization: Bearer s3cre\r\n\r\n");
        assert!(wrong.starts_with("HTTP/1.0 401"), "{wrong}");
        let ok = ask("GET /status HTTP/1.0\r\nAuthorization: Bearer s3cret\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("\"phase\": \"planning\""), "{ok}");
        let bad = ask("POST /control HTTP/1.0\r\nAuthorization: Bearer s3cret\r\nContent-Length: 5\r\n\r\n{nope");
        assert!(bad.starts_with("HTTP/1.0 400"), "{bad}");
        assert!(bad.contains("bad JSON"), "{bad}");
        drop(listener);
        assert!(!sock.exists(), "socket removed");
    }
}
