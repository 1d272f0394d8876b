//! TLS against a local rustls server with a self-generated certificate, on both drivers:
//! the verified policy refuses the unknown issuer, the insecure policy connects, reuses the
//! connection, and moves large bodies both ways.

mod net_support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use keepmover::net::{HttpClient, Method, NetError, Origin, Phase, Request, TlsPolicy};
use net_support::{ok_response, read_request, test_config};

struct TlsServer {
    origin: Origin,
    accepts: Arc<AtomicUsize>,
    /// What the server made of the client's bytes after `/corrupt`'s bad record.
    heard: Arc<Mutex<Vec<String>>>,
}

/// The server's socket: with `split`, every write sends a few bytes to a few KiB and pauses
/// now and then, so the client's reads end in the middle of TLS records.
struct Tcp {
    inner: std::net::TcpStream,
    split: bool,
    writes: usize,
    heard: Arc<Mutex<Vec<String>>>,
}

impl std::io::Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.split {
            return self.inner.write(buf);
        }
        self.writes += 1;
        if self.writes.is_multiple_of(16) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let n = [1, 7, 300, 1500, 5000, 17000][self.writes % 6].min(buf.len());
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A keep-alive HTTPS server: PUT answers with the body length, GET /big with 5 MiB, and
/// a few misbehaviours by path (see `respond`).
fn tls_server() -> TlsServer {
    tls_server_with(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

fn tls_server_with(versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsServer {
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let heard_by_server = heard.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_nodelay(true);
            counter.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            let heard = heard_by_server.clone();
            std::thread::spawn(move || {
                let session = rustls::ServerConnection::new(config).unwrap();
                let tcp = Tcp {
                    inner: tcp,
                    split: false,
                    writes: 0,
                    heard,
                };
                let mut stream = rustls::StreamOwned::new(session, tcp);
                // A failed handshake: record why (an alert from the client names it).
                if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                    stream.sock.heard.lock().unwrap().push(e.to_string());
                    return;
                }
                while let Some(req) = read_request(&mut stream) {
                    if respond(&mut stream, &req).is_err() {
                        return;
                    }
                }
            });
        }
    });
    TlsServer {
        origin: Origin::parse(&format!("https://127.0.0.1:{port}")).unwrap(),
        accepts,
        heard,
    }
}

type Stream = rustls::StreamOwned<rustls::ServerConnection, Tcp>;

fn respond(stream: &mut Stream, req: &net_support::SeenRequest) -> std::io::Result<()> {
    let line = req.request_line().to_string();
    let path = line.split(' ').nth(1).unwrap_or("");
    match path {
        "/big" => stream.write_all(&ok_response(&big_body()))?,
        // Records cut across the client's reads.
        "/split" => {
            stream.sock.split = true;
            stream.write_all(&ok_response(&big_body()[..300 << 10]))?;
            stream.flush()?;
            stream.sock.split = false;
        }
        // close_notify a tenth of the way into a 1 MiB Content-Length body.
        "/short" => {
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
            out.extend_from_slice(&big_body()[..100 << 10]);
            stream.write_all(&out)?;
            stream.conn.send_close_notify();
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            return Err(std::io::ErrorKind::Other.into());
        }
        // A TLS 1.3 key update sent once the response is out: it reaches an idle client.
        "/key-update" => {
            stream.write_all(&ok_response(b"ku"))?;
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            if stream.conn.refresh_traffic_keys().is_ok() {
                stream.flush()?;
            }
        }
        // The body's last bytes and the start of something else in one record, after the
        // rest of the body: the body read must stop at its end, inside that record.
        "/tail-and-more" => {
            let body = &big_body()[..20_000];
            let mut first = ok_response(body);
            first.truncate(first.len() - 10);
            stream.write_all(&first)?;
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut last = body[body.len() - 10..].to_vec();
            last.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            stream.write_all(&last)?;
        }
        // A response head, then a body record whose tag does not check; then what the
        // client says about it (a fatal alert, RFC 8446 §5.2) is recorded.
        "/corrupt" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")?;
            stream.flush()?;
            stream.conn.writer().write_all(&[7u8; 100])?;
            let mut record = Vec::new();
            stream.conn.write_tls(&mut record)?;
            if let Some(last) = record.last_mut() {
                *last ^= 1;
            }
            stream.sock.inner.write_all(&record)?;
            stream
                .sock
                .inner
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            let heard = loop {
                match stream.conn.read_tls(&mut stream.sock.inner) {
                    Ok(0) | Err(_) => break "closed without an alert".to_string(),
                    Ok(_) => {
                        if let Err(e) = stream.conn.process_new_packets() {
                            break e.to_string();
                        }
                    }
                }
            };
            stream.sock.heard.lock().unwrap().push(heard);
            return Err(std::io::ErrorKind::Other.into());
        }
        // Unsolicited bytes after the response: the connection must not be reused.
        "/extra" => {
            stream.write_all(&ok_response(b"x"))?;
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            stream.write_all(b"HTTP/1.1 200 OK\r\n")?;
        }
        _ => stream.write_all(&ok_response(format!("got {}", req.body.len()).as_bytes()))?,
    }
    stream.flush()
}

/// The first thing the server recorded of what the client said (waits up to 10 s).
async fn first_heard(server: &TlsServer) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(heard) = server.heard.lock().unwrap().first() {
            return heard.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server heard nothing"
        );
        compio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn big_body() -> Vec<u8> {
    (0..5u32 << 20).map(|i| (i % 253) as u8).collect()
}

async fn read_all(client: &HttpClient, origin: &Origin, path: &str, cap: usize) -> Vec<u8> {
    let mut resp = client
        .send(Request::new(Method::Get, origin.clone(), path))
        .await
        .unwrap();
    let mut buf = Vec::with_capacity(cap);
    loop {
        let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
        buf = b;
        if n.unwrap() == 0 {
            return buf;
        }
    }
}

/// PUTs of 0 B to 20 MiB, a 5 MiB GET and a GET whose records are cut across reads, all on
/// one connection.
async fn check_large_bodies(client: &HttpClient, server: &TlsServer) {
    for size in [0usize, 1, 16 << 10, (256 << 10) + 1, 20 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let req = Request::new(Method::Put, server.origin.clone(), "/p").body(Bytes::from(body));
        let resp = client.send(req).await.unwrap();
        assert_eq!(
            resp.read_to_end(100).await.unwrap(),
            format!("got {size}").as_bytes()
        );
    }
    assert!(read_all(client, &server.origin, "/big", 5 << 20).await == big_body());
    for _ in 0..2 {
        let got = read_all(client, &server.origin, "/split", 300 << 10).await;
        assert!(got == big_body()[..300 << 10]);
    }
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
}

on_both_backends! {
    verified_policy_rejects_unknown_issuer => |_| async {
        let server = tls_server();
        let client = HttpClient::new(test_config());
        let err = client.send(Request::new(Method::Get, server.origin.clone(), "/")).await.unwrap_err();
        match &err {
            NetError::Tls { detail, .. } => assert!(
                detail.contains("UnknownIssuer") || detail.contains("no system root"),
                "{err}"
            ),
            other => panic!("expected a TLS error, got {other}"),
        }
        eprintln!("verified policy: {err}");
        assert!(!err.is_retryable());
        // The server heard why: rustls's alert for an unknown issuer.
        let heard = first_heard(&server).await;
        assert!(heard.contains("UnknownCA"), "{heard}");
    };

    insecure_policy_works_and_reuses => |_| async {
        let server = tls_server();
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        for size in [0usize, 10, 3 << 20] {
            let req = Request::new(Method::Put, server.origin.clone(), "/p").body(Bytes::from(vec![1u8; size]));
            let resp = client.send(req).await.unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(resp.read_to_end(100).await.unwrap(), format!("got {size}").as_bytes());
        }
        let mut resp = client.send(Request::new(Method::Get, server.origin.clone(), "/big")).await.unwrap();
        let mut buf = Vec::with_capacity(5 << 20);
        loop {
            let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
            buf = b;
            if n.unwrap() == 0 { break; }
        }
        assert!(buf == big_body());
        assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
        assert_eq!(client.connections_opened(), 1);
    };

    tls12_moves_large_bodies_both_ways => |_| async {
        let server = tls_server_with(&[&rustls::version::TLS12]);
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        check_large_bodies(&client, &server).await;
    };

    tls13_moves_large_bodies_both_ways => |_| async {
        let server = tls_server_with(&[&rustls::version::TLS13]);
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        check_large_bodies(&client, &server).await;
    };

    close_notify_mid_body_is_an_error => |_| async {
        let server = tls_server();
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/short")).await.unwrap();
        let err = resp.read_to_end(2 << 20).await.unwrap_err();
        assert!(
            matches!(err, NetError::BodyTooShort { expected: 1048576, got: 102400, .. }),
            "{err}"
        );
    };

    key_update_on_an_idle_connection_is_absorbed => |_| async {
        let server = tls_server_with(&[&rustls::version::TLS13]);
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        for _ in 0..3 {
            let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/key-update")).await.unwrap();
            assert_eq!(resp.read_to_end(100).await.unwrap(), b"ku");
            compio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Every request reused the one connection (the key update was absorbed while idle)
        // and was read with the new keys.
        let req = Request::new(Method::Put, server.origin.clone(), "/p").body(Bytes::from(vec![3u8; 1 << 20]));
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"got 1048576");
        assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
    };

    unsolicited_bytes_on_an_idle_connection_retire_it => |_| async {
        let server = tls_server();
        let client = HttpClient::new(test_config());
        client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
        let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/extra")).await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"x");
        compio::time::sleep(std::time::Duration::from_millis(100)).await;
        let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/p")).await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"got 0");
        assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
    };

    a_corrupt_record_is_an_error_and_the_server_hears_bad_record_mac => |_| async {
        for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let server = tls_server_with(&[versions]);
            let client = HttpClient::new(test_config());
            client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
            let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/corrupt")).await.unwrap();
            let err = resp.read_to_end(1000).await.unwrap_err();
            assert!(matches!(err, NetError::Tls { .. }), "{versions:?}: {err}");
            let heard = first_heard(&server).await;
            assert!(heard.contains("BadRecordMac"), "{versions:?}: {heard}");
        }
    };

    a_body_read_stops_at_its_end_inside_a_record => |_| async {
        for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let server = tls_server_with(&[versions]);
            let client = HttpClient::new(test_config());
            client.set_tls_policy(&server.origin, TlsPolicy::Insecure);
            let got = read_all(&client, &server.origin, "/tail-and-more", 64 << 10).await;
            assert!(got == big_body()[..20_000], "{} bytes", got.len());
            // What followed the body was not taken for the next response.
            let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/p")).await.unwrap();
            assert_eq!(resp.read_to_end(100).await.unwrap(), b"got 0");
            assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
        }
    };

    handshake_stall_is_a_connect_timeout => |_| async {
        // Accepts TCP, never speaks TLS.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let _held: Vec<_> = listener.incoming().take(2).collect();
            std::thread::sleep(std::time::Duration::from_secs(3));
        });
        let origin = Origin::parse(&format!("https://127.0.0.1:{port}")).unwrap();
        let client = HttpClient::new(keepmover::net::ClientConfig {
            connect_timeout: std::time::Duration::from_millis(200),
            ..test_config()
        });
        client.set_tls_policy(&origin, TlsPolicy::Insecure);
        let err = client.send(Request::new(Method::Get, origin, "/")).await.unwrap_err();
        assert!(matches!(err, NetError::Timeout { phase: Phase::Connect, .. }), "{err}");
    };
}
