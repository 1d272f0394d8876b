//! The fault switches of a simulated keepstore, seen on the wire: where each one stops a
//! body and how the connection ends (silent, FIN, RST, endless trailers), body faults by
//! probability, a counted 503 storm, lying PUTs, injected 401s, `down`, the
//! `/_keepsim/faults` endpoint, and a restart on the same port.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{dechunk, eventually, md5_hex, parse, read_until, request, send, Ending};
use keepsim::{Cluster, ClusterConfig, Faults, LieReplicas};

fn cluster() -> Cluster {
    let mut config = ClusterConfig::new("fault", 1);
    config.blob_signing = false;
    Cluster::start(config).expect("cluster starts")
}

fn block(n: usize) -> Vec<u8> {
    keepsim::pseudo_random_bytes(n as u64, n)
}

#[test]
fn stall_mid_body_sends_half_then_stays_open_and_silent() {
    let c = cluster();
    let port = c.keepstore_ports[0];
    let data = block(100_000);
    let loc = c.put_block(0, &data).expect("stored");
    c.set_faults(
        0,
        Faults {
            stall_mid_body: true,
            ..Faults::default()
        },
    );
    let mut stream = send(port, "GET", &format!("/{loc}"), None, b"");
    let (raw, ending) = read_until(&mut stream, Duration::from_millis(400), usize::MAX);
    assert_eq!(ending, Ending::Silent, "no FIN, no RST, no more bytes");
    let reply = parse(&raw);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length").as_deref(), Some("100000"));
    assert_eq!(reply.body, data[..50_000]);
    // Still silent a while later.
    let (more, ending) = read_until(&mut stream, Duration::from_millis(300), usize::MAX);
    assert_eq!((more.len(), ending), (0, Ending::Silent));
    // A restart cuts the stalled connection, refuses connections during its pause, then
    // serves the same storage on the same port.
    c.restart_keepstore(0, Duration::from_millis(300));
    let (_, ending) = read_until(&mut stream, Duration::from_secs(2), usize::MAX);
    assert!(
        matches!(ending, Ending::Eof | Ending::Reset),
        "cut by the restart: {ending:?}"
    );
    assert!(!c.keepstore_is_up(0));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port closed during the pause"
    );
    assert!(c.wait_keepstore_up(0, Duration::from_secs(5)));
    c.set_faults(0, Faults::default());
    let r = request(port, "GET", &format!("/{loc}"), None, b"");
    assert_eq!((r.status, r.body == data), (200, true));
    assert_eq!(
        c.keepstores[0]
            .restarts
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn trickle_sends_at_the_given_rate() {
    let c = cluster();
    let data = block(20_000);
    let loc = c.put_block(0, &data).expect("stored");
    c.set_faults(
        0,
        Faults {
            trickle_bytes_per_sec: 40_000,
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let r = request(c.keepstore_ports[0], "GET", &format!("/{loc}"), None, b"");
    let elapsed = started.elapsed();
    assert_eq!((r.status, r.body == data), (200, true));
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "20 kB at 40 kB/s took {elapsed:?}"
    );
}

#[test]
fn endless_trailers_after_the_last_chunk() {
    let c = cluster();
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let data = block(70_000);
    let loc = c.put_block(0, &data).expect("stored");
    c.set_faults(
        0,
        Faults {
            endless_trailers: true,
            ..Faults::default()
        },
    );
    for (path, auth) in [
        (format!("/{loc}"), None),
        ("/index".to_string(), Some(token.as_str())),
    ] {
        let mut stream = send(port, "GET", &path, auth, b"");
        let (raw, ending) = read_until(&mut stream, Duration::from_secs(2), 2 << 20);
        assert_eq!(ending, Ending::Limit, "{path}: the server keeps sending");
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        let (body, terminated) = dechunk(&raw[head_end..]);
        assert!(terminated, "{path}: the 0 chunk was sent");
        if path == "/index" {
            assert!(String::from_utf8_lossy(&body).starts_with(&loc), "{path}");
        } else {
            assert_eq!(body, data);
        }
        let end = raw
            .windows(5)
            .rposition(|w| w == b"\r\n0\r\n")
            .expect("terminator")
            + 5;
        let trailers = &raw[end..];
        assert!(trailers.len() > 1 << 20, "{} trailer bytes", trailers.len());
        let whole = trailers.len() / 3 * 3;
        assert!(
            trailers[..whole].chunks(3).all(|l| l == b":\r\n"),
            "only ':\\r\\n' lines"
        );
    }
}

#[test]
fn reset_and_close_mid_body() {
    let c = cluster();
    let port = c.keepstore_ports[0];
    let data = block(100_000);
    let loc = c.put_block(0, &data).expect("stored");
    c.set_faults(
        0,
        Faults {
            reset: true,
            ..Faults::default()
        },
    );
    let mut stream = send(port, "GET", &format!("/{loc}"), None, b"");
    let (raw, ending) = read_until(&mut stream, Duration::from_secs(5), usize::MAX);
    assert_eq!(ending, Ending::Reset);
    let reply = parse(&raw);
    assert_eq!(reply.header("content-length").as_deref(), Some("100000"));
    assert!(reply.body.len() <= 50_000, "{}", reply.body.len());
    c.set_faults(
        0,
        Faults {
            close_mid_body: true,
            ..Faults::default()
        },
    );
    let mut stream = send(port, "GET", &format!("/{loc}"), None, b"");
    let (raw, ending) = read_until(&mut stream, Duration::from_secs(5), usize::MAX);
    assert_eq!(ending, Ending::Eof);
    assert_eq!(parse(&raw).body, data[..50_000]);
}

#[test]
fn body_faults_by_probability_and_a_counted_503_storm() {
    let c = cluster();
    let port = c.keepstore_ports[0];
    let data = block(2000);
    let loc = c.put_block(0, &data).expect("stored");
    // Every GET may be corrupted, with probability one half: some arrive right, some wrong.
    c.set_faults(
        0,
        Faults {
            corrupt_body: true,
            body_fault_probability: Some(0.5),
            ..Faults::default()
        },
    );
    let (mut right, mut wrong) = (0, 0);
    for _ in 0..40 {
        let r = request(port, "GET", &format!("/{loc}"), None, b"");
        assert_eq!((r.status, r.body.len()), (200, data.len()));
        if r.body == data {
            right += 1;
        } else {
            wrong += 1;
        }
    }
    assert!(right > 0 && wrong > 0, "{right} right, {wrong} corrupted");
    // The next two block requests answer 503, then the storm is over.
    c.set_faults(
        0,
        Faults {
            error_503_next: 2,
            ..Faults::default()
        },
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| request(port, "GET", &format!("/{loc}"), None, b"").status)
        .collect();
    assert_eq!(statuses, [503, 503, 200, 200]);
    assert_eq!(c.keepstores[0].faults().error_503_next, 0, "counted down");
}

#[test]
fn lying_puts() {
    let c = cluster();
    let port = c.keepstore_ports[0];
    c.set_faults(
        0,
        Faults {
            lie_replicas: LieReplicas::Extra,
            ..Faults::default()
        },
    );
    let data = block(1000);
    let r = request(port, "PUT", &format!("/{}", md5_hex(&data)), None, &data);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-keep-replicas-stored").as_deref(), Some("2"));
    assert_eq!(c.blocks_on(0).len(), 1, "claims 2, stored 1");
    c.set_faults(
        0,
        Faults {
            lie_replicas: LieReplicas::StoreNothing,
            ..Faults::default()
        },
    );
    let other = block(1001);
    let r = request(port, "PUT", &format!("/{}", md5_hex(&other)), None, &other);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-keep-replicas-stored").as_deref(), Some("1"));
    assert!(r.text().starts_with(&format!("{}+1001", md5_hex(&other))));
    assert_eq!(c.blocks_on(0).len(), 1, "nothing more stored");
}

#[test]
fn expired_401_and_down_and_the_faults_endpoint() {
    let c = cluster();
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let data = block(1000);
    let loc = c.put_block(0, &data).expect("stored");
    let set = request(
        port,
        "PUT",
        "/_keepsim/faults",
        Some(&token),
        br#"{"expired_401": 1.0}"#,
    );
    assert_eq!(set.status, 200);
    let r = request(port, "GET", &format!("/{loc}"), None, b"");
    assert_eq!((r.status, r.text().as_str()), (401, "expired signature\n"));
    let got = request(port, "GET", "/_keepsim/faults", Some(&token), b"");
    let faults: Faults = serde_json::from_slice(&got.body).expect("faults JSON");
    assert_eq!(faults.expired_401, 1.0);
    assert_eq!(
        request(
            port,
            "PUT",
            "/_keepsim/faults",
            Some(&token),
            br#"{"bogus":1}"#
        )
        .status,
        400
    );
    assert_eq!(
        request(port, "PUT", "/_keepsim/faults", None, b"{}").status,
        401
    );
    // A keep-alive connection that was served before `down` gets no answer, only a reset.
    c.set_faults(0, Faults::default());
    let keep_alive = format!("GET /{loc} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut early = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::io::Write::write_all(&mut early, keep_alive.as_bytes()).expect("send");
    let (raw, _) = read_until(&mut early, Duration::from_millis(300), usize::MAX);
    assert_eq!(parse(&raw).body, data, "served while up");
    c.set_faults(
        0,
        Faults {
            down: true,
            ..Faults::default()
        },
    );
    let mut late = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // The reset may come before the request is even written.
    let _ = std::io::Write::write_all(&mut late, keep_alive.as_bytes());
    let (raw, ending) = read_until(&mut late, Duration::from_secs(2), usize::MAX);
    assert!(
        raw.is_empty() && matches!(ending, Ending::Reset | Ending::Eof),
        "{ending:?}"
    );
    std::io::Write::write_all(&mut early, keep_alive.as_bytes()).expect("send");
    let (raw, ending) = read_until(&mut early, Duration::from_secs(2), usize::MAX);
    assert!(raw.is_empty() && ending == Ending::Reset, "{ending:?}");
    c.set_faults(0, Faults::default());
    // Restart over HTTP: answered, then the port goes away and comes back.
    let r = request(
        port,
        "PUT",
        "/_keepsim/restart?pause_ms=200",
        Some(&token),
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(2), || !c.keepstore_is_up(0)));
    assert!(c.wait_keepstore_up(0, Duration::from_secs(5)));
    assert_eq!(
        request(port, "GET", &format!("/{loc}"), None, b"").status,
        200
    );
}
