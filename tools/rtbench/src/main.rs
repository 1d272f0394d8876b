//! rtbench: measures, before keepmover relies on it, whether compio on io_uring actually
//! beats compio on epoll and tokio (epoll, current_thread) on loopback, with one blocking
//! std-thread server shared by all three clients. Workloads: bulk transfer of 64 MiB
//! blocks (GB/s) and 4 KiB request / 4 KiB response ping-pong (requests/s), each over 1
//! and 64 connections. Then keepmover's own `HttpClient` doing 64 KiB GETs against a
//! one-request-at-a-time keep-alive server over 1 vs 8 connections.
//!
//! Run: `cargo run --release -p rtbench` (`RTBENCH_SECS=2` for longer runs per cell).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use compio::driver::{DriverType, ProactorBuilder};
use compio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use compio::BufResult;
use keepmover::net::{ClientConfig, HttpClient, Method, Origin, Request};

const BLOCK: u64 = 64 << 20;

/// Reads completed by bulk clients (to report the average bytes one read returns).
static BULK_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
const PING: usize = 4096;
const HTTP_BODY: usize = 64 << 10;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------
// The shared server: blocking std sockets, one thread per connection.
// ---------------------------------------------------------------------------------------

/// First byte of a connection picks the workload: `B` = bulk (8-byte LE length in, that
/// many bytes out, repeated), `P` = ping-pong (4 KiB in, 4 KiB out, repeated).
fn start_raw_server() -> Res<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve_raw(stream);
            });
        }
    });
    Ok(addr)
}

fn serve_raw(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut mode = [0u8; 1];
    stream.read_exact(&mut mode)?;
    if mode[0] == b'B' {
        let data = vec![0x5au8; 1 << 20];
        let mut len = [0u8; 8];
        loop {
            stream.read_exact(&mut len)?;
            let mut left = u64::from_le_bytes(len) as usize;
            while left > 0 {
                let n = left.min(data.len());
                stream.write_all(&data[..n])?;
                left -= n;
            }
        }
    } else {
        let mut buf = vec![0u8; PING];
        loop {
            stream.read_exact(&mut buf)?;
            stream.write_all(&buf)?;
        }
    }
}

/// An HTTP/1.1 keep-alive server that handles one request at a time per connection (like
/// Go's net/http), answering every GET with a 64 KiB body after `service` of "work".
fn start_http_server(service: Duration) -> Res<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve_http(stream, service);
            });
        }
    });
    Ok(addr)
}

fn serve_http(mut stream: TcpStream, service: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {HTTP_BODY}\r\n\r\n").into_bytes();
    response.resize(response.len() + HTTP_BODY, 0x5a);
    let mut pending = Vec::new();
    let mut more = vec![0u8; 16 << 10];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if !service.is_zero() {
                thread::sleep(service);
            }
            stream.write_all(&response)?;
        }
        let n = stream.read(&mut more)?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&more[..n]);
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rt {
    CompioUring,
    CompioPoll,
    Tokio,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::CompioUring => "compio io_uring",
            Rt::CompioPoll => "compio epoll",
            Rt::Tokio => "tokio epoll (current_thread)",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Work {
    Bulk,
    Ping,
}

fn compio_runtime(driver: DriverType) -> Res<compio::runtime::Runtime> {
    let mut proactor = ProactorBuilder::new();
    proactor.driver_type(driver);
    if driver == DriverType::IoUring {
        let flags = std::env::var("RTBENCH_URING").unwrap_or_default();
        if flags.contains("coop") {
            proactor.coop_taskrun(true).taskrun_flag(true);
        }
        if flags.contains("defer") {
            proactor.defer_taskrun(true);
        }
    }
    let runtime = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()?;
    let got = runtime.driver_type();
    if got != driver {
        return Err(format!("asked for {driver:?}, got {got:?}").into());
    }
    Ok(runtime)
}

async fn compio_conn(addr: SocketAddr, work: Work, deadline: Instant) -> std::io::Result<u64> {
    let mut stream = compio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mode = match work {
        Work::Bulk => b'B',
        Work::Ping => b'P',
    };
    let BufResult(r, _) = stream.write_all(vec![mode]).await;
    r?;
    let mut done = 0u64;
    match work {
        Work::Bulk => {
            let mut buf = Vec::with_capacity(1 << 20);
            let mut request = BLOCK.to_le_bytes().to_vec();
            while Instant::now() < deadline {
                let BufResult(r, back) = stream.write_all(request).await;
                request = back;
                r?;
                let mut left = BLOCK;
                while left > 0 {
                    buf.clear();
                    let BufResult(r, back) = stream.read(buf).await;
                    buf = back;
                    let n = r?;
                    BULK_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    left = left.saturating_sub(n as u64);
                }
                done += BLOCK;
            }
        }
        Work::Ping => {
            let mut out = vec![7u8; PING];
            let mut inb = Vec::with_capacity(PING);
            while Instant::now() < deadline {
                let BufResult(r, back) = stream.write_all(out).await;
                out = back;
                r?;
                inb.clear();
                let BufResult(r, back) = stream.read_exact(inb).await;
                inb = back;
                r?;
                done += 1;
            }
        }
    }
    Ok(done)
}

async fn tokio_conn(addr: SocketAddr, work: Work, deadline: Instant) -> std::io::Result<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mode = match work {
        Work::Bulk => b'B',
        Work::Ping => b'P',
    };
    stream.write_all(&[mode]).await?;
    let mut done = 0u64;
    match work {
        Work::Bulk => {
            let mut buf = vec![0u8; 1 << 20];
            while Instant::now() < deadline {
                stream.write_all(&BLOCK.to_le_bytes()).await?;
                let mut left = BLOCK;
                while left > 0 {
                    let n = stream.read(&mut buf).await?;
                    BULK_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    left = left.saturating_sub(n as u64);
                }
                done += BLOCK;
            }
        }
        Work::Ping => {
            let out = vec![7u8; PING];
            let mut inb = vec![0u8; PING];
            while Instant::now() < deadline {
                stream.write_all(&out).await?;
                stream.read_exact(&mut inb).await?;
                done += 1;
            }
        }
    }
    Ok(done)
}

/// Runs `conns` connections of `work` for about `secs`; returns (units done, seconds).
fn run_cell(rt: Rt, addr: SocketAddr, work: Work, conns: usize, secs: f64) -> Res<(u64, f64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let total = match rt {
        Rt::CompioUring | Rt::CompioPoll => {
            let driver = if rt == Rt::CompioUring {
                DriverType::IoUring
            } else {
                DriverType::Poll
            };
            let runtime = compio_runtime(driver)?;
            runtime.block_on(async move {
                let handles: Vec<_> = (0..conns)
                    .map(|_| compio::runtime::spawn(compio_conn(addr, work, deadline)))
                    .collect();
                let mut total = 0u64;
                for handle in handles {
                    match handle.await {
                        Ok(Ok(n)) => total += n,
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err("task panicked".to_string()),
                    }
                }
                Ok(total)
            })?
        }
        Rt::Tokio => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            runtime.block_on(async move {
                let handles: Vec<_> = (0..conns)
                    .map(|_| tokio::spawn(tokio_conn(addr, work, deadline)))
                    .collect();
                let mut total = 0u64;
                for handle in handles {
                    match handle.await {
                        Ok(Ok(n)) => total += n,
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(total)
            })?
        }
    };
    Ok((total, started.elapsed().as_secs_f64()))
}

/// keepmover's HttpClient: `conns` tasks each doing sequential 64 KiB GETs for `secs`.
fn run_http(addr: SocketAddr, driver: DriverType, conns: usize, secs: f64) -> Res<(u64, f64)> {
    let runtime = compio_runtime(driver)?;
    let origin = Origin::parse(&format!("http://{addr}"))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let total = runtime.block_on(async move {
        let client = HttpClient::new(ClientConfig {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_idle_per_origin: 64,
            pool_idle_expiry: Duration::from_secs(60),
            max_head_bytes: 16 << 10,
            ..ClientConfig::default()
        });
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let client = client.clone();
                let origin = origin.clone();
                compio::runtime::spawn(async move {
                    let mut buf: Vec<u8> = Vec::with_capacity(HTTP_BODY);
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        let request = Request {
                            method: Method::Get,
                            origin: origin.clone(),
                            path_and_query: "/block".to_string(),
                            headers: Vec::new(),
                            body: None,
                        };
                        let mut response = client.send(request).await.map_err(|e| e.to_string())?;
                        buf.clear();
                        loop {
                            let BufResult(r, back) = response.read_body_chunk(buf).await;
                            buf = back;
                            match r {
                                Ok(0) => break,
                                Ok(_) => {}
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                        if buf.len() != HTTP_BODY {
                            return Err(format!("short body {}", buf.len()));
                        }
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut total = 0u64;
        for handle in handles {
            match handle.await {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("task panicked".to_string()),
            }
        }
        Ok(total)
    })?;
    Ok((total, started.elapsed().as_secs_f64()))
}

fn main() -> Res<()> {
    let secs: f64 = std::env::var("RTBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let raw = start_raw_server()?;
    let runtimes = [Rt::CompioUring, Rt::CompioPoll, Rt::Tokio];
    println!("## runtimes (loopback, {secs} s per cell, blocking std-thread server)\n");
    println!("| workload | conns | compio io_uring | compio epoll | tokio epoll | uring/epoll | uring/tokio |");
    println!("|---|---|---|---|---|---|---|");
    let mut read_sizes = Vec::new();
    for (work, unit) in [(Work::Bulk, "GB/s"), (Work::Ping, "req/s")] {
        for conns in [1usize, 64] {
            let mut rates = Vec::new();
            for rt in runtimes {
                BULK_READS.store(0, std::sync::atomic::Ordering::Relaxed);
                let (done, elapsed) = run_cell(rt, raw, work, conns, secs)?;
                let reads = BULK_READS.load(std::sync::atomic::Ordering::Relaxed).max(1);
                let rate = match work {
                    Work::Bulk => done as f64 / elapsed / 1e9,
                    Work::Ping => done as f64 / elapsed,
                };
                if let Work::Bulk = work {
                    read_sizes.push(format!(
                        "bulk, {conns} conn(s), {}: {:.0} KiB per read",
                        rt.name(),
                        done as f64 / reads as f64 / 1024.0
                    ));
                }
                eprintln!("{:?} {conns} {}: {rate:.3} {unit}", work, rt.name());
                rates.push(rate);
            }
            let fmt = |r: f64| match work {
                Work::Bulk => format!("{r:.2} {unit}"),
                Work::Ping => format!("{r:.0} {unit}"),
            };
            let label = match work {
                Work::Bulk => "64 MiB bulk",
                Work::Ping => "4 KiB ping-pong",
            };
            println!(
                "| {label} | {conns} | {} | {} | {} | {:.2} | {:.2} |",
                fmt(rates[0]),
                fmt(rates[1]),
                fmt(rates[2]),
                rates[0] / rates[1],
                rates[0] / rates[2],
            );
        }
    }

    println!("\nAverage bytes returned by one read (bulk):\n");
    for line in read_sizes {
        println!("- {line}");
    }
    println!("\n## keepmover HttpClient, 64 KiB GETs, one-at-a-time keep-alive server\n");
    println!("| server service time | driver | 1 conn req/s | 8 conns req/s | 8/1 |");
    println!("|---|---|---|---|---|");
    for service_ms in [0u64, 1] {
        let http = start_http_server(Duration::from_millis(service_ms))?;
        for (driver, name) in [
            (DriverType::IoUring, "io_uring"),
            (DriverType::Poll, "epoll"),
        ] {
            let (one, t1) = run_http(http, driver, 1, secs)?;
            let (eight, t8) = run_http(http, driver, 8, secs)?;
            let r1 = one as f64 / t1;
            let r8 = eight as f64 / t8;
            println!(
                "| {service_ms} ms | {name} | {r1:.0} | {r8:.0} | {:.2} |",
                r8 / r1
            );
        }
    }
    Ok(())
}
