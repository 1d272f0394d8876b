//! keepsim's keepstore API against `keep-protocol.md` §5, over real sockets with raw HTTP:
//! statuses and bodies, signatures, the unsorted index, admin tokens, the limiter, faults.

use std::io::{Read, Write};
use std::net::TcpStream;

use keepsim::keep::signature::sign_locator;
use keepsim::{Cluster, ClusterConfig, Faults};
use md5::{Digest, Md5};

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
}

fn hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cluster(signing: bool) -> Cluster {
    let mut config = ClusterConfig::new("zzzzz", 1);
    config.blob_signing = signing;
    config.mounts_per_keepstore = 2;
    Cluster::start(config).unwrap()
}

#[test]
fn put_then_get_with_signatures() {
    let c = cluster(true);
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let data = b"hello keep";
    let hash = hex(data);
    let put = request(port, "PUT", &format!("/{hash}"), Some(&token), data);
    assert_eq!(put.status, 200, "{}", put.head);
    assert!(
        put.head
            .to_ascii_lowercase()
            .contains("x-keep-replicas-stored: 1"),
        "{}",
        put.head
    );
    let signed = String::from_utf8(put.body).unwrap();
    assert!(
        signed.starts_with(&format!("{hash}+10+A")) && signed.ends_with('\n'),
        "{signed}"
    );
    let signed = signed.trim();
    let get = request(port, "GET", &format!("/{signed}"), Some(&token), b"");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, data);
    // No token, bad signature, expired signature, unsigned.
    assert_eq!(
        request(port, "GET", &format!("/{signed}"), None, b"").status,
        401
    );
    assert_eq!(
        request(port, "GET", &format!("/{signed}"), Some("other"), b"").status,
        400
    );
    let expired = sign_locator(
        &format!("{hash}+10"),
        &token,
        c.config.blob_signing_key.as_bytes(),
        1,
        c.config.blob_signing_ttl,
    );
    let r = request(port, "GET", &format!("/{expired}"), Some(&token), b"");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (401, &b"expired signature\n"[..])
    );
    let r = request(port, "GET", &format!("/{hash}+10"), Some(&token), b"");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (400, &b"invalid signature\n"[..])
    );
}

#[test]
fn keepstore_statuses() {
    let c = cluster(false);
    let port = c.keepstore_ports[0];
    let hash = hex(b"abc");
    let r = request(port, "PUT", &format!("/{hash}"), None, b"abd");
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body).starts_with("content hash "),
        "{:?}",
        r.body
    );
    assert_eq!(
        request(port, "PUT", &format!("/{hash}"), None, b"abc").status,
        200,
        "PUT needs no token"
    );
    assert_eq!(
        request(port, "GET", &format!("/{hash}"), None, b"").status,
        405,
        "GET without size"
    );
    assert_eq!(
        request(port, "GET", &format!("/{hash}+0"), None, b"").status,
        405
    );
    assert_eq!(
        request(port, "HEAD", &format!("/{hash}"), None, b"").status,
        200,
        "HEAD without size is fine"
    );
    assert_eq!(
        request(port, "GET", &format!("//{hash}+3"), None, b"").status,
        200
    );
    let missing = request(port, "GET", &format!("/{}+3", hex(b"nope")), None, b"");
    assert_eq!(
        (missing.status, missing.body.as_slice()),
        (404, &b"file does not exist\n"[..])
    );
    assert_eq!(
        request(port, "GET", &format!("/{hash}++3"), None, b"").status,
        400
    );
    assert_eq!(request(port, "POST", "/", None, b"").status, 400);
    assert_eq!(request(port, "OPTIONS", "/anything", None, b"").status, 200);
    let empty = request(port, "GET", "/d41d8cd98f00b204e9800998ecf8427e", None, b"");
    assert_eq!(
        empty.status, 404,
        "the empty block is stored like any other"
    );
    assert!(request(port, "GET", &format!("/{hash}+3"), None, b"")
        .head
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: *"));
}

#[test]
fn index_is_admin_only_unsorted_and_lists_each_mount() {
    let c = cluster(false);
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    assert_eq!(request(port, "GET", "/index", None, b"").status, 401);
    assert_eq!(
        request(port, "GET", "/index", Some("wrong"), b"").status,
        403
    );
    let mut hashes = Vec::new();
    for n in 0..300 {
        let data = format!("block {n}");
        hashes.push(c.put_block(0, data.as_bytes()).unwrap());
    }
    c.put_block_on_mount(0, 0, b"on both").unwrap();
    c.put_block_on_mount(0, 1, b"on both").unwrap();
    let index = request(port, "GET", "/index", Some(&token), b"");
    assert_eq!(index.status, 200);
    let text = String::from_utf8(index.body).unwrap();
    assert!(text.ends_with("\n\n"), "completion marker");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 302, "300 blocks + one block listed twice");
    let dirs: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
    let mut sorted = dirs.clone();
    sorted.sort();
    assert_ne!(
        dirs, sorted,
        "top-level directories come in readdir order, not sorted"
    );
    let prefix = &hashes[0][..2];
    let sub = String::from_utf8(
        request(port, "GET", &format!("/index/{prefix}"), Some(&token), b"").body,
    )
    .unwrap();
    assert!(sub
        .lines()
        .filter(|l| !l.is_empty())
        .all(|l| l.starts_with(prefix)));
    let q = request(
        port,
        "GET",
        &format!("/index?prefix={prefix}"),
        Some(&token),
        b"",
    );
    assert_eq!(String::from_utf8(q.body).unwrap(), sub);
    let mount = &c.keepstores[0].mounts[1].uuid;
    let per_mount = request(
        port,
        "GET",
        &format!("/mounts/{mount}/blocks"),
        Some(&token),
        b"",
    );
    assert_eq!(per_mount.status, 200);
    assert_eq!(
        request(
            port,
            "GET",
            "/mounts/zzzzz-nyw5e-nosuchmount0000/blocks",
            Some(&token),
            b""
        )
        .status,
        404
    );
    let mounts: serde_json::Value =
        serde_json::from_slice(&request(port, "GET", "/mounts", Some(&token), b"").body).unwrap();
    assert_eq!(mounts.as_array().unwrap().len(), 2);
    assert_eq!(
        request(port, "GET", "/index/XYZ", Some(&token), b"").status,
        400
    );
}

#[test]
fn faults_and_the_request_limiter() {
    let mut config = ClusterConfig::new("zzzzz", 1);
    config.blob_signing = false;
    config.max_concurrent = 1;
    config.max_queued = 0;
    let c = Cluster::start(config).unwrap();
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let data = vec![7u8; 100_000];
    let loc = c.put_block(0, &data).unwrap();
    c.set_faults(
        0,
        Faults {
            error_500: 1.0,
            ..Faults::default()
        },
    );
    assert_eq!(
        request(port, "GET", &format!("/{loc}"), None, b"").status,
        500
    );
    c.set_faults(
        0,
        Faults {
            corrupt_body: true,
            ..Faults::default()
        },
    );
    let r = request(port, "GET", &format!("/{loc}"), None, b"");
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    assert_ne!(r.body, data);
    c.set_faults(
        0,
        Faults {
            truncate_index: true,
            ..Faults::default()
        },
    );
    let body = String::from_utf8(request(port, "GET", "/index", Some(&token), b"").body).unwrap();
    assert!(!body.ends_with("\n\n"), "{body:?}");
    c.set_faults(
        0,
        Faults {
            close_mid_body: true,
            ..Faults::default()
        },
    );
    assert!(
        request(port, "GET", &format!("/{loc}"), None, b"")
            .body
            .len()
            < data.len()
    );
    // One request held by a delay; a second one at the same time is refused with 503.
    c.set_faults(
        0,
        Faults {
            delay_ms: 500,
            ..Faults::default()
        },
    );
    let slow = std::thread::spawn(move || request(port, "GET", "/index", None, b"").status);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(request(port, "GET", "/index", None, b"").status, 503);
    assert_eq!(slow.join().unwrap(), 401);
    c.set_faults(0, Faults::default());
    c.set_capacity(0, Some(100_000 + 10));
    assert_eq!(
        request(port, "PUT", &format!("/{}", hex(b"big")), None, b"big").status,
        200,
        "fits in the 10 bytes left"
    );
    assert_eq!(
        request(
            port,
            "PUT",
            &format!("/{}", hex(b"more bytes")),
            None,
            b"more bytes"
        )
        .status,
        507
    );
    c.set_read_only(0, true);
    assert_eq!(
        request(port, "PUT", &format!("/{}", hex(b"x")), None, b"x").status,
        507
    );
}

#[test]
fn pull_list_copies_from_another_keepstore() {
    let mut config = ClusterConfig::new("zzzzz", 2);
    config.blob_signing = false;
    let c = Cluster::start(config).unwrap();
    let loc = c.put_block(0, b"pull me").unwrap();
    let list =
        serde_json::json!([{"locator": loc, "servers": [c.keepstore_url(0)], "mount_uuid": ""}])
            .to_string();
    let r = request(
        c.keepstore_ports[1],
        "PUT",
        "/pull",
        Some(&c.config.system_root_token),
        list.as_bytes(),
    );
    assert_eq!(r.status, 200);
    for _ in 0..50 {
        if !c.blocks_on(1).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.blocks_on(1), vec![loc]);
}

fn send_pull(c: &Cluster, server: usize, list: &serde_json::Value) -> u16 {
    request(
        c.keepstore_ports[server],
        "PUT",
        "/pull",
        Some(&c.config.system_root_token),
        list.to_string().as_bytes(),
    )
    .status
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn pull_refuses_a_first_locator_without_size_and_bad_json() {
    let c = Cluster::start(ClusterConfig::new("zzzzz", 2)).unwrap();
    let bare = serde_json::json!([{"locator": hex(b"x"), "servers": [c.keepstore_url(0)]}]);
    assert_eq!(send_pull(&c, 1, &bare), 400);
    let r = request(
        c.keepstore_ports[1],
        "PUT",
        "/pull",
        Some(&c.config.system_root_token),
        b"not json",
    );
    assert_eq!(r.status, 500);
    assert_eq!(send_pull(&c, 1, &serde_json::json!([])), 200);
}

#[test]
fn pulls_sign_with_the_pulling_keepstores_own_key() {
    // Same key and TTL on both clusters: the pull's signature verifies at the source.
    let src = Cluster::start(ClusterConfig::new("srcaa", 1)).unwrap();
    let mut config = ClusterConfig::new("dstbb", 1);
    config.blob_signing_key = src.config.blob_signing_key.clone();
    let dst = Cluster::start(config).unwrap();
    let loc = src.put_block(0, b"shared key").unwrap();
    let list = serde_json::json!([{"locator": loc, "servers": [src.keepstore_url(0)]}]);
    assert_eq!(send_pull(&dst, 0, &list), 200);
    assert!(wait_for(|| dst.blocks_on(0) == vec![loc.clone()]));
    // Another key: the source answers 400 to the pull's GET and nothing arrives.
    let other = Cluster::start(ClusterConfig::new("othcc", 1)).unwrap();
    let loc2 = src.put_block(0, b"other key").unwrap();
    let list = serde_json::json!([{"locator": loc2, "servers": [src.keepstore_url(0)]}]);
    assert_eq!(send_pull(&other, 0, &list), 200);
    assert!(wait_for(|| other.keepstores[0].pull.stats().failed == 1));
    assert!(other.blocks_on(0).is_empty());
}

#[test]
fn a_new_pull_list_replaces_the_queue() {
    let mut config = ClusterConfig::new("zzzzz", 2);
    config.blob_signing = false;
    config.blob_replicate_concurrency = 1;
    let c = Cluster::start(config).unwrap();
    let items: Vec<serde_json::Value> = (0..50)
        .map(|i| {
            let loc = c.put_block(0, format!("queued {i}").as_bytes()).unwrap();
            serde_json::json!({"locator": loc, "servers": [c.keepstore_url(0)]})
        })
        .collect();
    // The source answers slowly: the one worker is busy with the first item while the
    // other 49 wait in the queue, and the next list replaces them.
    c.set_faults(
        0,
        Faults {
            delay_ms: 300,
            ..Faults::default()
        },
    );
    assert_eq!(send_pull(&c, 1, &serde_json::Value::from(items)), 200);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let last = c.put_block(0, b"only this one").unwrap();
    let list = serde_json::json!([{"locator": last, "servers": [c.keepstore_url(0)]}]);
    assert_eq!(send_pull(&c, 1, &list), 200);
    assert!(wait_for(|| c.blocks_on(1).contains(&last)));
    assert_eq!(c.keepstores[1].pull.stats().queued, 0);
    assert_eq!(
        c.blocks_on(1).len(),
        2,
        "the first item and the last list's one"
    );
}

#[test]
fn pull_hooks_drop_half_a_list_once_and_damage_chosen_blocks() {
    let mut config = ClusterConfig::new("zzzzz", 2);
    config.blob_signing = false;
    let c = Cluster::start(config).unwrap();
    let locs: Vec<String> = (0..4)
        .map(|i| c.put_block(0, format!("hook {i}").as_bytes()).unwrap())
        .collect();
    c.set_faults(
        1,
        Faults {
            pull_drop_second_half_once: true,
            ..Faults::default()
        },
    );
    let list = |locs: &[String]| -> serde_json::Value {
        locs.iter()
            .map(|l| serde_json::json!({"locator": l, "servers": [c.keepstore_url(0)]}))
            .collect::<Vec<_>>()
            .into()
    };
    assert_eq!(send_pull(&c, 1, &list(&locs)), 200);
    assert!(wait_for(|| c.blocks_on(1).len() == 2));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(c.blocks_on(1).len(), 2, "the second half was dropped");
    assert!(!c.keepstores[1].faults().pull_drop_second_half_once);
    c.set_faults(
        1,
        Faults {
            pull_corrupt: vec![locs[3][..32].to_string()],
            ..Faults::default()
        },
    );
    assert_eq!(send_pull(&c, 1, &list(&locs)), 200);
    assert!(wait_for(|| c.keepstores[1].pull.stats().failed == 1));
    assert!(wait_for(|| c.blocks_on(1).len() == 3));
    assert!(!c.blocks_on(1).contains(&locs[3]));
}

#[test]
fn api_server_answers_discovery_and_services_over_https() {
    let c = cluster(true);
    // The API server speaks TLS only; a plain request gets no HTTP answer.
    let mut stream = TcpStream::connect(c.api_addr()).unwrap();
    stream.write_all(b"GET /discovery/v1/apis/arvados/v1/rest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"));
    let services: serde_json::Value = serde_json::from_str(&c.keep_services_json()).unwrap();
    assert_eq!(services["items"][0]["uuid"], "zzzzz-bi6l4-000000000000000");
    assert!(c
        .settings_file_text()
        .contains("ARVADOS_API_HOST_INSECURE=true"));
}
