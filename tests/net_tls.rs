//! TLS against a local rustls server with a self-generated certificate, on both drivers:
//! the verified policy refuses the unknown issuer, the insecure policy connects, reuses the
//! connection, and moves large bodies both ways.

mod net_support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use keepmover::net::{HttpClient, Method, NetError, Origin, Phase, Request, TlsPolicy};
use net_support::{ok_response, read_request, test_config};

struct TlsServer {
    origin: Origin,
    accepts: Arc<AtomicUsize>,
}

/// A keep-alive HTTPS server: PUT answers with the body length, GET /big with 5 MiB.
fn tls_server() -> TlsServer {
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            std::thread::spawn(move || {
                let session = rustls::ServerConnection::new(config).unwrap();
                let mut stream = rustls::StreamOwned::new(session, tcp);
                while let Some(req) = read_request(&mut stream) {
                    let resp = if req.request_line().starts_with("GET /big") {
                        ok_response(&big_body())
                    } else {
                        ok_response(format!("got {}", req.body.len()).as_bytes())
                    };
                    if stream.write_all(&resp).is_err() || stream.flush().is_err() {
                        return;
                    }
                }
            });
        }
    });
    TlsServer {
        origin: Origin::parse(&format!("https://127.0.0.1:{port}")).unwrap(),
        accepts,
    }
}

fn big_body() -> Vec<u8> {
    (0..5u32 << 20).map(|i| (i % 253) as u8).collect()
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
