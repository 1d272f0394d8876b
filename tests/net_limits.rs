//! Budgets that keep a slow or hostile server from holding or bloating a run, on both
//! drivers: the minimum rate (response bodies, request bodies, chunked index streams),
//! endless trailers, the per-response body limit for every framing, the error-body cap and
//! the per-origin connection cap.

#[path = "net_support/mod.rs"]
mod net_support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keepmover::net::{ClientConfig, HttpClient, Method, NetError, Request};
use net_support::{ok_response, read_request, serve, serve_each, test_config, TestServer};

fn slow_config() -> ClientConfig {
    // 1 KiB/s floor, 300 ms grace: a trickle of 10 bytes every 100 ms (100 B/s) never idles
    // out but fails the rate within about a second.
    ClientConfig {
        idle_timeout: Duration::from_millis(300),
        min_rate: 1024,
        ..test_config()
    }
}

/// A head, then `body` one byte every 100 ms.
fn trickle_server(head: &'static [u8], body: &'static [u8]) -> TestServer {
    serve(move |_, mut stream| {
        if read_request(&mut stream).is_some() {
            stream.set_nodelay(true).ok();
            if stream.write_all(head).is_err() {
                return;
            }
            for b in body {
                std::thread::sleep(Duration::from_millis(100));
                if stream.write_all(std::slice::from_ref(b)).is_err() {
                    return;
                }
            }
        }
    })
}

async fn get(
    client: &HttpClient,
    server: &TestServer,
) -> Result<keepmover::net::Response, NetError> {
    client
        .send(Request::new(Method::Get, server.origin.clone(), "/"))
        .await
}

on_both_backends! {
    slow_body_fails_min_rate => |_| async {
        let server = trickle_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &[b'x'; 100]);
        let client = HttpClient::new(slow_config());
        let started = Instant::now();
        let err = get(&client, &server).await.expect("head").read_to_end(1000).await.expect_err("too slow");
        assert!(matches!(err, NetError::TooSlow { min_rate: 1024, .. }), "{err:?}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("1024 bytes/s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    };

    slow_chunked_index_stream_fails_min_rate => |_| async {
        let server = trickle_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n1\r\ne\r\n1\r\nf\r\n1\r\ng\r\n0\r\n\r\n",
        );
        let client = HttpClient::new(slow_config());
        let err = get(&client, &server).await.expect("head").read_to_end(1000).await.expect_err("too slow");
        assert!(matches!(err, NetError::TooSlow { .. }), "{err:?}");
    };

    min_rate_zero_disables_the_rule => |_| async {
        let server = trickle_server(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", b"hello world!");
        let client = HttpClient::new(ClientConfig { min_rate: 0, ..slow_config() });
        let body = get(&client, &server).await.expect("head").read_to_end(100).await.expect("body");
        assert_eq!(body, b"hello world!");
    };

    slow_request_body_fails_min_rate => |_| async {
        // The server reads the request body at ~2.5 MiB/s: a 24 MiB PUT cannot finish at the
        // 24 MiB/s floor (deadline 1 s grace + 1 s), though every write makes progress.
        let server = serve(|_, mut stream| {
            use std::io::Read;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                std::thread::sleep(Duration::from_millis(100));
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let client = HttpClient::new(ClientConfig {
            min_rate: 24 << 20,
            idle_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(5),
            ..test_config()
        });
        let started = Instant::now();
        let request = Request::new(Method::Put, server.origin.clone(), "/put").body(Bytes::from(vec![0u8; 24 << 20]));
        let err = client.send(request).await.expect_err("too slow");
        assert!(matches!(err, NetError::TooSlow { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    };

    endless_trailers_fail_fast => |_| async {
        let server = serve(|_, mut stream| {
            if read_request(&mut stream).is_some() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n");
                let junk = b":\r\n".repeat(4096);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(10) {
                    if stream.write_all(&junk).is_err() {
                        return;
                    }
                }
            }
        });
        let client = HttpClient::new(test_config());
        let started = Instant::now();
        let err = get(&client, &server).await.expect("head").read_to_end(1000).await.expect_err("endless");
        assert!(matches!(err, NetError::FramingTooLarge { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(2));
    };

    endless_interim_heads_fail_fast => |_| async {
        let server = serve(|_, mut stream| {
            if read_request(&mut stream).is_some() {
                let junk = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(1000);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(10) {
                    if stream.write_all(&junk).is_err() {
                        return;
                    }
                }
            }
        });
        let client = HttpClient::new(ClientConfig { first_byte_timeout: Duration::from_secs(5), ..test_config() });
        let started = Instant::now();
        let err = get(&client, &server).await.expect_err("endless 1xx");
        assert!(matches!(err, NetError::HeadTooLarge { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    };

    body_limit_for_every_framing => |_| async {
        let server = serve_each(|req| {
            if req.request_line().contains("/length") {
                ok_response(&[b'a'; 100])
            } else if req.request_line().contains("/chunked") {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n".iter().copied()
                    .chain([b'b'; 50]).chain(*b"\r\n32\r\n").chain([b'b'; 50]).chain(*b"\r\n0\r\n\r\n").collect()
            } else {
                let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                r.extend_from_slice(&[b'c'; 100]);
                r
            }
        });
        let client = HttpClient::new(test_config());
        for path in ["/length", "/chunked", "/eof"] {
            let mut resp = client.send(Request::new(Method::Get, server.origin.clone(), path)).await.expect("head");
            let early = resp.limit_body(60);
            let failed_early = early.is_err();
            let err = match early {
                Err(e) => e,
                Ok(()) => {
                    let mut total = 0;
                    loop {
                        let compio::BufResult(r, buf) = resp.read_body_chunk(Vec::with_capacity(16)).await;
                        match r {
                            Ok(0) => panic!("{path}: body accepted"),
                            Ok(n) => { total += n; assert_eq!(buf.len(), n); }
                            Err(e) => break NetError::from_io(e).expect("NetError"),
                        }
                    }
                    .tap(|_| assert!(total <= 61, "{path}: {total} bytes delivered"))
                }
            };
            assert!(matches!(err, NetError::BodyTooLong { limit: 60, .. }), "{path}: {err:?}");
            if path == "/length" {
                assert!(failed_early, "a declared length fails at once");
            }
        }
    };

    error_body_is_cut_at_the_cap => |_| async {
        let server = serve_each(|_| {
            let mut r = b"HTTP/1.1 503 Busy\r\nContent-Length: 100000\r\n\r\n".to_vec();
            r.extend_from_slice(&[b'e'; 100000]);
            r
        });
        let client = HttpClient::new(ClientConfig { max_error_body: 1000, ..test_config() });
        let resp = get(&client, &server).await.expect("head");
        assert_eq!(resp.status, 503);
        assert_eq!(resp.read_error_body().await.expect("text").len(), 1000);
        let small = serve_each(|_| b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec());
        let resp = get(&client, &small).await.expect("head");
        assert_eq!(resp.read_error_body().await.expect("text"), b"not found");
        assert_eq!(client.idle_connections(&small.origin), 1, "a complete error body keeps the connection");
    };

    connection_cap_makes_requests_wait_and_reuse => |_| async {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (l, p) = (live.clone(), peak.clone());
        let server = serve(move |_, mut stream| {
            let now = l.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            while read_request(&mut stream).is_some() {
                std::thread::sleep(Duration::from_millis(20));
                if stream.write_all(&ok_response(b"ok")).is_err() {
                    break;
                }
            }
            l.fetch_sub(1, Ordering::SeqCst);
        });
        let client = HttpClient::new(ClientConfig { max_conns_per_origin: 3, ..test_config() });
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let client = client.clone();
            let origin = server.origin.clone();
            tasks.push(compio::runtime::spawn(async move {
                let resp = client.send(Request::new(Method::Get, origin.clone(), "/")).await?;
                assert!(client.open_connections(&origin) <= 3);
                resp.read_to_end(10).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("task").expect("request"), b"ok");
        }
        assert_eq!(server.accepts(), 3, "idle pooled connections were reused");
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(client.open_connections(&server.origin), 3);
        assert_eq!(client.idle_connections(&server.origin), 3);
    };

    connection_cap_frees_a_slot_when_a_connection_closes => |_| async {
        // Every answer closes its connection: waiters must get the freed slots.
        let server = serve(|_, mut stream| {
            if read_request(&mut stream).is_some() {
                std::thread::sleep(Duration::from_millis(10));
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
            }
        });
        let client = HttpClient::new(ClientConfig { max_conns_per_origin: 2, ..test_config() });
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = client.clone();
            let origin = server.origin.clone();
            tasks.push(compio::runtime::spawn(async move {
                client.send(Request::new(Method::Get, origin, "/")).await?.read_to_end(10).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("task").expect("request"), b"ok");
        }
        assert_eq!(server.accepts(), 8);
        assert_eq!(client.open_connections(&server.origin), 0);
    };
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl<T> Tap for T {}
