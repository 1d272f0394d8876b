//! The mid-body stall: a server sends the head (right Content-Length) and part of the body,
//! then goes silent with the connection open. Many bodies are read concurrently on one
//! runtime, into 64 MiB buffers with spare capacity, with a task spawned between reads (as
//! the engine hashes), some from healthy servers. Every stalled read must end with an idle
//! timeout and every healthy one must complete; on both drivers. Before the fix this hung
//! in optimized builds (see `run_until` in `src/net/conn.rs`); run it with
//! `cargo test --release --test net_stall` too.

#[path = "net_support/mod.rs"]
mod net_support;

use std::io::Write;
use std::time::{Duration, Instant};

use compio::BufResult;
use keepmover::net::{ClientConfig, HttpClient, Method, NetError, Phase, Request};
use net_support::{read_request, serve, test_config, TestServer};

const BODY: usize = 1 << 20;

/// Head + half the body, then silence with the connection open (until the test ends).
fn stalling_server(sent: usize) -> TestServer {
    serve(move |_, mut stream| {
        if read_request(&mut stream).is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&vec![7u8; sent]);
            std::thread::sleep(Duration::from_secs(20));
        }
    })
}

fn healthy_server() -> TestServer {
    serve(|_, mut stream| {
        let body = vec![7u8; BODY];
        while read_request(&mut stream).is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
                return;
            }
        }
    })
}

/// Reads a body as the engine does: into one big buffer, a spawned task touching each new
/// piece before the next read.
async fn read_like_the_engine(client: HttpClient, request: Request) -> Result<usize, NetError> {
    let mut response = client.send(request).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 20);
    loop {
        let before = buf.len();
        let BufResult(read, returned) = response.read_body_chunk(buf).await;
        buf = returned;
        match read {
            Ok(0) => return Ok(buf.len()),
            Ok(_) => {
                let after = buf.len();
                buf = compio::runtime::spawn(async move {
                    let sum: u64 = buf[before..after].iter().map(|&b| u64::from(b)).sum();
                    std::hint::black_box(sum);
                    buf
                })
                .await
                .expect("hash task");
            }
            Err(e) => return Err(NetError::from_io(e).expect("a NetError")),
        }
    }
}

on_both_backends! {
    stalled_bodies_time_out_among_healthy_ones => |_| async {
        let stalled = [stalling_server(BODY / 2), stalling_server(0), stalling_server(1)];
        let healthy = [healthy_server(), healthy_server()];
        // The idle timeout alone (the minimum-rate rule, tested in net_limits.rs, would end
        // these stalls too).
        let client = HttpClient::new(ClientConfig { min_rate: 0, ..test_config() });
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..24usize {
            let origin = if i % 3 == 0 {
                stalled[(i / 3) % 3].origin.clone()
            } else {
                healthy[i % 2].origin.clone()
            };
            let request = Request::new(Method::Get, origin, "/block");
            tasks.push((i, compio::runtime::spawn(read_like_the_engine(client.clone(), request))));
        }
        for (i, task) in tasks {
            let result = task.await.expect("task");
            if i % 3 == 0 {
                match result {
                    Err(NetError::Timeout { phase: Phase::Idle, .. }) => {}
                    other => panic!("request {i}: expected an idle timeout, got {other:?}"),
                }
            } else {
                assert_eq!(result.expect("healthy body"), BODY, "request {i}");
            }
        }
        // Idle timeout 500 ms; a hang would run into the servers' 20 s.
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    };
}
