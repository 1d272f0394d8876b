//! Small requests to a Go-like server (each connection reads pipelined requests and answers
//! them strictly one at a time, like Go's net/http): sequential on one keep-alive
//! connection, pipelined in batches on one connection, and spread over many connections.
//! Answers whether pipelining pays, and whether many connections beat it for GETs.
//!
//! The server can add a per-request service time (`--service-us`, sleep, no CPU), which is
//! where one connection's serial handling hurts and many connections win.
//!
//! Run: `cargo bench --bench pipelining -- [--requests N] [--service-us U] [--backend uring|epoll]`

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::time::{Duration, Instant};

use keepmover::net::{build_runtime, ClientConfig, HttpClient, IoBackend, Method, Origin, Request};

const BODY: &[u8] = &[b'k'; 100];

/// Go-like: a thread per connection, requests read through a buffered reader and answered
/// in order, one at a time.
fn go_like_server(service: Duration) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                let mut response =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len())
                        .into_bytes();
                response.extend_from_slice(BODY);
                loop {
                    // Request line + headers (GETs, no body).
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if !service.is_zero() {
                        std::thread::sleep(service);
                    }
                    if writer.write_all(&response).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

fn request(origin: &Origin, i: usize) -> Request {
    Request::new(Method::Get, origin.clone(), format!("/{i:032x}+100"))
}

async fn sequential(client: &HttpClient, origin: &Origin, n: usize) {
    for i in 0..n {
        let resp = client.send(request(origin, i)).await.unwrap();
        assert_eq!(resp.read_to_end(1000).await.unwrap().len(), BODY.len());
    }
}

async fn pipelined(client: &HttpClient, origin: &Origin, n: usize, batch: usize) {
    let mut i = 0;
    while i < n {
        let reqs: Vec<Request> = (i..(i + batch).min(n))
            .map(|k| request(origin, k))
            .collect();
        i += reqs.len();
        for r in client.send_pipelined(reqs, 1000).await {
            assert_eq!(r.unwrap().body.len(), BODY.len());
        }
    }
}

/// `conns` tasks, each sending its share sequentially (or pipelined in `batch`es).
async fn many(client: &HttpClient, origin: &Origin, n: usize, conns: usize, batch: usize) {
    let client = Rc::new(client.clone());
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let client = client.clone();
            let origin = origin.clone();
            let share = n / conns + usize::from(c < n % conns);
            compio::runtime::spawn(async move {
                if batch <= 1 {
                    sequential(&client, &origin, share).await
                } else {
                    pipelined(&client, &origin, share, batch).await
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let n: usize = arg("--requests").map_or(20_000, |v| v.parse().unwrap());
    let service = Duration::from_micros(arg("--service-us").map_or(0, |v| v.parse().unwrap()));
    let backend: IoBackend = arg("--backend").map_or(IoBackend::Auto, |v| v.parse().unwrap());
    let (runtime, backend) = build_runtime(backend).unwrap();
    let origin = go_like_server(service);
    println!("# {n} GETs (100-byte bodies), server service time {service:?}, client on {backend}");
    let config = ClientConfig {
        max_idle_per_origin: 128,
        ..ClientConfig::default()
    };
    runtime.block_on(async {
        let cases: Vec<(&str, usize, usize)> = vec![
            ("sequential, 1 conn", 1, 1),
            ("pipelined x16, 1 conn", 1, 16),
            ("pipelined x64, 1 conn", 1, 64),
            ("sequential, 8 conns", 8, 1),
            ("sequential, 64 conns", 64, 1),
            ("pipelined x16, 8 conns", 8, 16),
        ];
        for (name, conns, batch) in cases {
            let client = HttpClient::new(config.clone());
            // Warm the pool so connects are not measured.
            many(&client, &origin, conns, conns, 1).await;
            let started = Instant::now();
            if conns == 1 && batch > 1 {
                pipelined(&client, &origin, n, batch).await;
            } else {
                many(&client, &origin, n, conns, batch).await;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{name:24} {:9.0} req/s  ({} connections opened)",
                n as f64 / secs,
                client.connections_opened()
            );
        }
    });
}
