//! Shared helpers for the `net_*` integration tests: hand-scripted raw-socket servers and a
//! way to run each test on both compio drivers (io_uring and epoll).
#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keepmover::net::{build_runtime, io_uring_available, ClientConfig, IoBackend, Origin};

/// Runs `test` on a fresh runtime on `backend`. io_uring tests are skipped (with a note) when
/// the kernel or a seccomp filter forbids io_uring.
pub fn run_on<F, Fut>(backend: IoBackend, test: F)
where
    F: FnOnce(IoBackend) -> Fut,
    Fut: Future<Output = ()>,
{
    if backend == IoBackend::Uring && !io_uring_available() {
        eprintln!("io_uring unavailable here: skipping the io_uring variant");
        return;
    }
    let (runtime, actual) = build_runtime(backend).expect("runtime");
    assert_eq!(actual, backend);
    runtime.block_on(test(backend));
}

/// Declares each test twice, in modules `uring` and `epoll`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident => $body:expr;)*) => {
        mod uring {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() { net_support::run_on(keepmover::net::IoBackend::Uring, $body) } )*
        }
        mod epoll {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() { net_support::run_on(keepmover::net::IoBackend::Epoll, $body) } )*
        }
    };
}

/// Short timeouts so failing-path tests stay fast.
pub fn test_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(500),
        max_idle_per_origin: 8,
        pool_idle_expiry: Duration::from_secs(30),
        max_head_bytes: 64 << 10,
        ..ClientConfig::default()
    }
}

pub struct TestServer {
    pub origin: Origin,
    pub accepts: Arc<AtomicUsize>,
}

impl TestServer {
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// A server thread accepting connections forever; each connection is handled on its own
/// thread by `handler(connection_index, stream)`.
pub fn serve<F>(handler: F) -> TestServer
where
    F: Fn(usize, TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            std::thread::spawn(move || handler(index, stream));
        }
    });
    TestServer {
        origin: Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        accepts,
    }
}

/// A request as the server saw it.
#[derive(Debug)]
pub struct SeenRequest {
    pub head: String,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

/// Reads one request (head, then a Content-Length body) byte by byte; None at EOF.
pub fn read_request(stream: &mut impl Read) -> Option<SeenRequest> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(SeenRequest { head, body })
}

/// Writes `bytes` one byte at a time, flushing each (with TCP_NODELAY), to split the
/// response at every boundary.
pub fn write_bytewise(stream: &mut TcpStream, bytes: &[u8]) {
    stream.set_nodelay(true).unwrap();
    for b in bytes {
        if stream.write_all(std::slice::from_ref(b)).is_err() {
            return;
        }
        let _ = stream.flush();
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// A keep-alive server answering every request with `respond(request)`.
pub fn serve_each<F>(respond: F) -> TestServer
where
    F: Fn(&SeenRequest) -> Vec<u8> + Send + Sync + 'static,
{
    serve(move |_, mut stream| {
        while let Some(req) = read_request(&mut stream) {
            if stream.write_all(&respond(&req)).is_err() {
                return;
            }
        }
    })
}

pub fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}
