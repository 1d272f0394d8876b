//! Edge cases of the HTTP/1.1 client against hand-scripted raw-socket servers, on both
//! drivers: split heads and bodies, Connection: close, 1xx, short and long bodies, bad
//! chunks, oversized heads, stalls (timeouts by phase), stale pooled connections, trailers,
//! bodies delimited by EOF, early answers to large PUTs.

#[path = "net_support/mod.rs"]
mod net_support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use bytes::Bytes;
use keepmover::net::{ClientConfig, HttpClient, Method, NetError, Phase, Request, Response};
use net_support::{
    ok_response, read_request, serve, serve_each, test_config, write_bytewise, TestServer,
};

async fn get(client: &HttpClient, server: &TestServer, path: &str) -> Result<Response, NetError> {
    client
        .send(Request::new(Method::Get, server.origin.clone(), path))
        .await
}

/// Reads a body with small, odd-sized buffers to exercise chunk boundaries on our side too.
async fn read_body_small_steps(resp: &mut Response) -> Result<Vec<u8>, NetError> {
    let mut all = Vec::new();
    loop {
        let buf = Vec::with_capacity(7);
        let compio::BufResult(n, buf) = resp.read_body_chunk(buf).await;
        match n {
            Ok(0) => return Ok(all),
            Ok(_) => all.extend_from_slice(&buf),
            Err(e) => return Err(NetError::from_io(e).expect("a NetError")),
        }
    }
}

const CL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-A: b\r\n\r\n0123456789";
const CHUNKED_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\na;x=y\r\n456789abcd\r\n0\r\nX-Trailer: t\r\n\r\n";

on_both_backends! {
    response_written_byte_by_byte => |_| async {
        let server = serve(|_, mut stream| {
            let mut n = 0;
            while read_request(&mut stream).is_some() {
                let resp = if n % 2 == 0 { CL_RESPONSE } else { CHUNKED_RESPONSE };
                write_bytewise(&mut stream, resp);
                n += 1;
            }
        });
        let client = HttpClient::new(test_config());
        for i in 0..4 {
            let mut resp = get(&client, &server, "/").await.unwrap();
            let body = read_body_small_steps(&mut resp).await.unwrap();
            if i % 2 == 0 {
                assert_eq!(resp.header("x-a"), Some("b"));
                assert_eq!(body, b"0123456789");
            } else {
                assert_eq!(body, b"0123456789abcd");
                assert_eq!(resp.trailers(), &[("X-Trailer".to_string(), "t".to_string())]);
            }
        }
        assert_eq!(server.accepts(), 1);
    };

    response_in_every_two_way_split => |_| async {
        // Request k (k >= 1) is answered in two writes split at byte k of the response; the
        // first half of the requests get the Content-Length response, then the chunked one.
        let server = serve(|_, mut stream| {
            stream.set_nodelay(true).unwrap();
            let mut k = 0usize;
            while read_request(&mut stream).is_some() {
                k += 1;
                let resp = if k < CL_RESPONSE.len() { CL_RESPONSE } else { CHUNKED_RESPONSE };
                let split = if k < CL_RESPONSE.len() { k } else { k - CL_RESPONSE.len() + 1 };
                stream.write_all(&resp[..split]).unwrap();
                stream.flush().unwrap();
                std::thread::sleep(Duration::from_millis(1));
                stream.write_all(&resp[split..]).unwrap();
            }
        });
        let client = HttpClient::new(test_config());
        let total = CL_RESPONSE.len() - 1 + CHUNKED_RESPONSE.len() - 1;
        for k in 1..=total {
            let resp = get(&client, &server, "/").await.unwrap();
            let body = resp.read_to_end(100).await.unwrap();
            if k < CL_RESPONSE.len() {
                assert_eq!(body, b"0123456789", "split {k}");
            } else {
                assert_eq!(body, b"0123456789abcd", "split {k}");
            }
        }
        assert_eq!(server.accepts(), 1);
    };

    connection_close_is_not_pooled => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").unwrap();
        });
        let client = HttpClient::new(test_config());
        for _ in 0..3 {
            let resp = get(&client, &server, "/").await.unwrap();
            assert_eq!(resp.read_to_end(10).await.unwrap(), b"ok");
        }
        assert_eq!(server.accepts(), 3);
        assert_eq!(client.idle_connections(&server.origin), 0);
    };

    interim_1xx_responses_are_skipped => |_| async {
        let server = serve_each(|_| {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".to_vec()
        });
        let client = HttpClient::new(test_config());
        for _ in 0..2 {
            let resp = client
                .send(Request::new(Method::Put, server.origin.clone(), "/p").body(Bytes::from_static(b"data")))
                .await
                .unwrap();
            assert_eq!(resp.status, 201);
            assert_eq!(resp.header("link"), None);
            assert_eq!(resp.read_to_end(10).await.unwrap(), b"ok");
        }
        assert_eq!(server.accepts(), 1);
    };

    body_shorter_than_content_length => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123").unwrap();
            // then EOF
        });
        let client = HttpClient::new(test_config());
        let mut resp = get(&client, &server, "/").await.unwrap();
        match read_body_small_steps(&mut resp).await {
            Err(NetError::BodyTooShort { expected: 10, got: 4, .. }) => {}
            other => panic!("expected BodyTooShort, got {other:?}"),
        }
        let resp = get(&client, &server, "/").await.unwrap();
        let err = resp.read_to_end(100).await.unwrap_err();
        assert!(matches!(err, NetError::BodyTooShort { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains(&server.origin.to_string()));
        assert_eq!(client.idle_connections(&server.origin), 0);
    };

    body_longer_than_content_length_same_segment => |_| async {
        let server = serve(|index, mut stream| {
            while read_request(&mut stream).is_some() {
                if index == 0 {
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil").unwrap();
                } else {
                    stream.write_all(&ok_response(b"good")).unwrap();
                }
            }
        });
        let client = HttpClient::new(test_config());
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"hello");
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"good");
        assert_eq!(server.accepts(), 2);
    };

    body_longer_than_content_length_late_bytes => |_| async {
        let server = serve(|index, mut stream| {
            stream.set_nodelay(true).unwrap();
            while read_request(&mut stream).is_some() {
                if index == 0 {
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
                    std::thread::sleep(Duration::from_millis(30));
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil").unwrap();
                } else {
                    stream.write_all(&ok_response(b"good")).unwrap();
                }
            }
        });
        let client = HttpClient::new(test_config());
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"hello");
        compio::time::sleep(Duration::from_millis(100)).await;
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"good");
        assert_eq!(server.accepts(), 2);
    };

    bad_chunked_encodings => |_| async {
        let cases: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        ];
        for case in cases {
            let server = serve(move |_, mut stream| {
                read_request(&mut stream).unwrap();
                stream.write_all(case).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            });
            let client = HttpClient::new(test_config());
            let err = get(&client, &server, "/").await.unwrap().read_to_end(100).await.unwrap_err();
            assert!(matches!(err, NetError::BadChunk { .. }), "{err}");
            assert!(!err.is_retryable());
        }
    };

    oversized_head => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..200 {
                head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(40)).as_bytes());
            }
            head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            let _ = stream.write_all(&head);
        });
        let client = HttpClient::new(ClientConfig { max_head_bytes: 1024, ..test_config() });
        let err = get(&client, &server, "/").await.unwrap_err();
        assert!(matches!(err, NetError::HeadTooLarge { limit: 1024, .. }), "{err}");
        // One long header, head complete in one segment.
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            let head = format!("HTTP/1.1 200 OK\r\nX-Long: {}\r\nContent-Length: 0\r\n\r\n", "v".repeat(3000));
            let _ = stream.write_all(head.as_bytes());
        });
        let err = get(&client, &server, "/").await.unwrap_err();
        assert!(matches!(err, NetError::HeadTooLarge { limit: 1024, .. }), "{err}");
        // An endless head, byte by byte.
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            write_bytewise(&mut stream, format!("HTTP/1.1 200 OK\r\nX-Long: {}", "v".repeat(2000)).as_bytes());
        });
        // Generous timeouts: a loaded CI machine sends 1 KiB byte by byte slowly, and the
        // limit, not the clock, is what this case checks (it flaked at 500 ms under load).
        let client = HttpClient::new(ClientConfig {
            max_head_bytes: 1024,
            first_byte_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(20),
            ..test_config()
        });
        let err = get(&client, &server, "/").await.unwrap_err();
        assert!(matches!(err, NetError::HeadTooLarge { limit: 1024, .. }), "{err}");
    };

    stalled_server_first_byte_timeout => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let client = HttpClient::new(ClientConfig { first_byte_timeout: Duration::from_millis(200), ..test_config() });
        let started = std::time::Instant::now();
        let err = get(&client, &server, "/").await.unwrap_err();
        assert!(matches!(err, NetError::Timeout { phase: Phase::FirstByte, .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.is_retryable());
    };

    stalled_body_idle_timeout_returns_buffer => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n01234").unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        // The minimum-rate rule is off: its grace equals the idle timeout, so it would win the
        // race whenever 5 bytes' worth of time (76 µs) passed before the stalled read.
        let client = HttpClient::new(ClientConfig { idle_timeout: Duration::from_millis(200), min_rate: 0, ..test_config() });
        let mut resp = get(&client, &server, "/").await.unwrap();
        let mut buf = Vec::with_capacity(1000);
        let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
        assert_eq!(n.unwrap(), 5);
        buf = b;
        let started = std::time::Instant::now();
        let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
        let err = NetError::from_io(n.unwrap_err()).unwrap();
        assert!(matches!(err, NetError::Timeout { phase: Phase::Idle, .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // The caller's buffer came back, contents intact.
        assert_eq!(b, b"01234");
        assert_eq!(b.capacity(), 1000);
    };

    idle_timeout_is_progress_based => |_| async {
        // 20 pieces, 100 ms apart: 2 s in all, far beyond the 300 ms idle timeout.
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n").unwrap();
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(100));
                stream.write_all(b"x").unwrap();
            }
        });
        // min_rate off: this is about the idle timeout alone (10 bytes/s is far below the
        // default minimum rate; see net_limits.rs for that rule).
        let client = HttpClient::new(ClientConfig { idle_timeout: Duration::from_millis(300), min_rate: 0, ..test_config() });
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), vec![b'x'; 20]);
    };

    stale_pooled_connection_is_retried_once => |_| async {
        // First connection: answers one request, then reads the next and hangs up on it.
        let server = serve(|index, mut stream| {
            if index == 0 {
                read_request(&mut stream).unwrap();
                stream.write_all(&ok_response(b"first")).unwrap();
                read_request(&mut stream).unwrap();
                let _ = stream.shutdown(Shutdown::Both);
            } else {
                while read_request(&mut stream).is_some() {
                    stream.write_all(&ok_response(b"again")).unwrap();
                }
            }
        });
        let client = HttpClient::new(test_config());
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"first");
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"again");
        assert_eq!(server.accepts(), 2);
    };

    closed_idle_connection_is_not_reused => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(&ok_response(b"one")).unwrap();
            // Server-side idle close, without Connection: close.
        });
        let client = HttpClient::new(test_config());
        for _ in 0..2 {
            let resp = get(&client, &server, "/").await.unwrap();
            assert_eq!(resp.read_to_end(100).await.unwrap(), b"one");
            compio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(server.accepts(), 2);
    };

    non_idempotent_request_is_not_retried => |_| async {
        let server = serve(|index, mut stream| {
            read_request(&mut stream).unwrap();
            if index == 0 {
                stream.write_all(&ok_response(b"first")).unwrap();
                read_request(&mut stream).unwrap();
            }
            let _ = stream.shutdown(Shutdown::Both);
        });
        let client = HttpClient::new(test_config());
        let resp = get(&client, &server, "/").await.unwrap();
        resp.read_to_end(100).await.unwrap();
        let err = client
            .send(Request::new(Method::Other("POST".into()), server.origin.clone(), "/"))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Closed { .. } | NetError::Io { .. }), "{err}");
        assert_eq!(server.accepts(), 1);
    };

    body_until_eof => |_| async {
        let server = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            write_bytewise(&mut stream, b"HTTP/1.0 200 OK\r\n\r\nuntil the end");
        });
        let client = HttpClient::new(test_config());
        let mut resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(read_body_small_steps(&mut resp).await.unwrap(), b"until the end");
        let resp = get(&client, &server, "/").await.unwrap();
        assert_eq!(resp.read_to_end(100).await.unwrap(), b"until the end");
        assert_eq!(server.accepts(), 2);
    };

    body_too_long_for_read_to_end => |_| async {
        let server = serve_each(|_| ok_response(&[b'a'; 1000]));
        let client = HttpClient::new(test_config());
        let err = get(&client, &server, "/").await.unwrap().read_to_end(999).await.unwrap_err();
        assert!(matches!(err, NetError::BodyTooLong { limit: 999, .. }), "{err}");
        let server = serve_each(|_| b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n".iter().copied().chain([b'a'; 1000]).chain(*b"\r\n0\r\n\r\n").collect());
        let err = get(&client, &server, "/").await.unwrap().read_to_end(999).await.unwrap_err();
        assert!(matches!(err, NetError::BodyTooLong { limit: 999, .. }), "{err}");
    };

    early_answer_to_large_put => |_| async {
        // Like Go answering 503 without reading a large body, then closing.
        let server = serve(|_, mut stream| {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let mut some = vec![0u8; 64 << 10];
            let _ = stream.read(&mut some);
            stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 5\r\n\r\nbusy\n").unwrap();
            let _ = stream.shutdown(Shutdown::Write);
            std::thread::sleep(Duration::from_millis(100));
        });
        let client = HttpClient::new(test_config());
        let body = Bytes::from(vec![0u8; 32 << 20]);
        match client.send(Request::new(Method::Put, server.origin.clone(), "/x").body(body)).await {
            Ok(resp) => {
                assert_eq!(resp.status, 503);
                assert_eq!(resp.read_to_end(100).await.unwrap(), b"busy\n");
            }
            // A reset can destroy the answer before it is read; then a transport error.
            Err(err) => assert!(err.is_retryable(), "{err}"),
        }
    };

    discard_keeps_small_bodies_connection => |_| async {
        let server = serve_each(|req| {
            if req.request_line().contains("/small") { ok_response(&[1u8; 1000]) } else { ok_response(&vec![2u8; 3 << 20]) }
        });
        let client = HttpClient::new(test_config());
        get(&client, &server, "/small").await.unwrap().discard().await.unwrap();
        get(&client, &server, "/small").await.unwrap().discard().await.unwrap();
        assert_eq!(server.accepts(), 1);
        get(&client, &server, "/large").await.unwrap().discard().await.unwrap();
        get(&client, &server, "/small").await.unwrap().discard().await.unwrap();
        assert_eq!(server.accepts(), 2);
    };

    dropped_response_closes_connection => |_| async {
        let server = serve_each(|_| ok_response(&[1u8; 100_000]));
        let client = HttpClient::new(test_config());
        let mut resp = get(&client, &server, "/").await.unwrap();
        let compio::BufResult(n, _) = resp.read_body_chunk(Vec::with_capacity(10)).await;
        assert_eq!(n.unwrap(), 10);
        drop(resp);
        assert_eq!(client.idle_connections(&server.origin), 0);
        get(&client, &server, "/").await.unwrap().discard().await.unwrap();
        assert_eq!(server.accepts(), 2);
    };

    connect_refused => |_| async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let origin = keepmover::net::Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let client = HttpClient::new(test_config());
        let err = client.send(Request::new(Method::Get, origin, "/")).await.unwrap_err();
        assert!(matches!(err, NetError::Connect { .. }), "{err}");
        assert!(err.is_retryable());
    };

    invalid_requests_are_refused => |_| async {
        let server = serve_each(|_| ok_response(b""));
        let client = HttpClient::new(test_config());
        let err = client
            .send(Request::new(Method::Get, server.origin.clone(), "/a").header("X", "a\r\nInjected: 1"))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::InvalidRequest { .. }), "{err}");
        assert_eq!(server.accepts(), 0);
    };
}
