//! TLS against Go's `crypto/tls`, which is what a keepstore speaks (`tests/go_tls/server.go`,
//! built with the `go` on PATH). Go differs from the rustls servers of `net_tls.rs` where
//! keepmover's own TLS 1.3 record layer takes over from rustls: Go sends its session tickets
//! in its first flight, right after its Finished, and picks AES-128-GCM by its own order.
//! PUTs and GETs of up to 20 MiB go both ways on one connection, on both drivers.
//!
//! Without Go (1.13 or later) the tests say so and pass, unless `CI` is set: `.ci/run`
//! installs Debian's `golang-go` (as root, where apt can).

mod net_support;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use keepmover::net::{HttpClient, Method, Origin, Request, TlsPolicy};
use net_support::test_config;

/// The Go server, killed on drop (and gone by itself when its stdin closes).
struct GoServer {
    child: Child,
    origin: Origin,
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds (once per test binary) and starts the Go server; `None` without a `go` on PATH.
fn go_server() -> Option<GoServer> {
    static BUILT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let binary = BUILT.get_or_init(|| {
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-tls-server");
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go_tls/server.go");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(source)
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "off")
            .env(
                "GOCACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"),
            )
            .status();
        let why = match built {
            Ok(status) if status.success() => return Some(binary),
            Ok(status) => format!("go build {source}: {status}"),
            Err(e) => format!("no Go toolchain ({e})"),
        };
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {why}: .ci/run installs golang-go"
        );
        eprintln!("SKIPPED: {why}; these tests need Go 1.13 or later on PATH");
        None
    });
    let binary = binary.as_ref()?;
    let mut child = Command::new(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Go server");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the Go server's port");
    let port: u16 = line.trim().parse().expect("a port");
    let origin = Origin::parse(&format!("https://127.0.0.1:{port}")).expect("origin");
    Some(GoServer { child, origin })
}

async fn get(client: &HttpClient, origin: &Origin, path: &str, cap: usize) -> Vec<u8> {
    let mut resp = client
        .send(Request::new(Method::Get, origin.clone(), path))
        .await
        .expect("GET");
    assert_eq!(resp.status, 200);
    let mut buf = Vec::with_capacity(cap);
    loop {
        let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
        buf = b;
        if n.expect("body") == 0 {
            return buf;
        }
    }
}

on_both_backends! {
    bodies_both_ways_on_one_connection_to_a_go_server => |_| async {
        let Some(server) = go_server() else { return };
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        for size in [0usize, 1, 16 << 10, (256 << 10) + 1, 20 << 20] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let req = Request::new(Method::Put, server.origin.clone(), "/p").body(Bytes::from(body));
            let resp = client.send(req).await.expect("PUT");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.read_to_end(100).await.expect("answer"), format!("got {size}").as_bytes());
        }
        let want: Vec<u8> = (0..5u32 << 20).map(|i| (i % 253) as u8).collect();
        for _ in 0..3 {
            assert!(get(&client, &server.origin, "/big", 5 << 20).await == want);
        }
        // Every request went over the first connection (the tickets of Go's first flight
        // were taken, nothing was left over), a TLS 1.3 one with AES-GCM, which keepmover's
        // record layer takes over (ChaCha20, which Go picks on CPUs without AES hardware,
        // stays with rustls).
        let conns = get(&client, &server.origin, "/conns", 64).await;
        let conns = String::from_utf8_lossy(&conns);
        let (count, tls) = conns.split_once(' ').expect("count, version, suite");
        assert_eq!(count, "1");
        assert!(
            ["0304 1301", "0304 1302", "0304 1303"].contains(&tls),
            "TLS version and suite: {tls}"
        );
        if tls == "0304 1303" {
            eprintln!("Go picked ChaCha20-Poly1305: rustls kept the records");
        }
        assert_eq!(client.connections_opened(), 1);
    };
}
