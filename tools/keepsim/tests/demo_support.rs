//! What keepmover's `demo` needs from keepsim, over real sockets: a synthetic block set
//! placed where a Keep client would have written it and served by streaming, and a
//! digest-only destination that MD5-checks PUTs as they stream in and answers placement
//! queries without keeping any data.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{md5_hex, read_until, request, send, Ending};
use keepsim::keep::rendezvous::probe_order_go;
use keepsim::keep::signature::sign_locator;
use keepsim::{BlockSetConfig, BlockSizes, Cluster, ClusterConfig};

fn sizes() -> Vec<u32> {
    vec![
        (2 << 20) + 12_345,
        1 << 20,
        70_000,
        65_536,
        4096,
        5000,
        60_000,
        1,
        0,
    ]
}

fn source() -> Cluster {
    let mut config = ClusterConfig::new("srcaa", 4);
    config.block_set = Some(BlockSetConfig {
        sizes: BlockSizes::List(sizes()),
        seed: 9,
        replicas: 2,
    });
    Cluster::start(config).expect("source starts")
}

#[test]
fn block_set_is_placed_in_rendezvous_order_and_streamed() {
    let c = source();
    let set = c.block_set.clone().expect("block set");
    assert_eq!(set.len(), sizes().len());
    let uuids: Vec<String> = (0..4).map(|i| c.keepstore_uuid(i).to_string()).collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    let token = c.config.system_root_token.clone();
    for (hash, size) in set.blocks() {
        let hex = hash.to_string();
        let expected: BTreeSet<usize> = probe_order_go(&hex, &refs).into_iter().take(2).collect();
        let holders = c.locate(&hex);
        let got: BTreeSet<usize> = holders.iter().map(|h| h.keepstore).collect();
        assert_eq!(got, expected, "{hex}");
        assert!(holders.iter().all(|h| h.size == size));
        // Served (signed GET), streamed, correct.
        let server = *expected.iter().next().expect("a holder");
        let signed = sign_locator(
            &format!("{hex}+{size}"),
            &token,
            c.config.blob_signing_key.as_bytes(),
            u64::MAX >> 33,
            c.config.blob_signing_ttl,
        );
        if size == 0 {
            continue; // GET with +0 is 405 for any hash but the empty block's.
        }
        let r = request(
            c.keepstore_ports[server],
            "GET",
            &format!("/{signed}"),
            Some(&token),
            b"",
        );
        assert_eq!(r.status, 200, "{hex}");
        assert_eq!(r.header("content-length"), Some(size.to_string()));
        assert_eq!(md5_hex(&r.body), hex);
        let head = request(
            c.keepstore_ports[server],
            "HEAD",
            &format!("/{signed}"),
            Some(&token),
            b"",
        );
        assert_eq!(head.status, 200);
    }
    // Every keepstore's index lists exactly its copies.
    let mut lines = 0;
    for k in 0..4 {
        let r = request(c.keepstore_ports[k], "GET", "/index", Some(&token), b"");
        let text = r.text();
        assert!(text.ends_with("\n\n") || text == "\n");
        lines += text.lines().filter(|l| !l.is_empty()).count();
    }
    assert_eq!(lines, 2 * sizes().len());
}

#[test]
fn digest_only_destination_checks_puts_and_answers_placement() {
    let mut config = ClusterConfig::new("dstbb", 2);
    config.digest_only = true;
    config.blob_signing = false;
    let c = Cluster::start(config).expect("destination starts");
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let data = keepsim::pseudo_random_bytes(3, (3 << 20) + 1);
    let hash = md5_hex(&data);
    let r = request(port, "PUT", &format!("/{hash}"), Some(&token), &data);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keep-replicas-stored").as_deref(), Some("1"));
    assert_eq!(
        r.header("x-keep-storage-classes-confirmed").as_deref(),
        Some("default=1")
    );
    assert!(r.text().starts_with(&format!("{hash}+{}+A", data.len())));
    let holders = c.locate(&hash);
    assert_eq!(holders.len(), 1);
    assert_eq!(
        (holders[0].keepstore, holders[0].size),
        (0, data.len() as u64)
    );
    // Wrong body: refused by the streaming MD5.
    let r = request(port, "PUT", &format!("/{}", md5_hex(b"other")), None, &data);
    assert_eq!(r.status, 400);
    assert!(r
        .text()
        .starts_with(&format!("content hash {hash} did not match")));
    // Existence and listing work; data does not.
    let head = request(port, "HEAD", &format!("/{hash}+{}", data.len()), None, b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(data.len().to_string()));
    let get = request(port, "GET", &format!("/{hash}+{}", data.len()), None, b"");
    assert_eq!(get.status, 422);
    assert!(get.text().contains("only the digest"), "{}", get.text());
    let index = request(port, "GET", "/index", Some(&token), b"").text();
    assert_eq!(
        index,
        format!("{hash}+{} {}\n\n", data.len(), holders[0].mtime_ns)
    );
    assert!(c.get_block(0, &hash).is_none(), "no bytes kept");
    // A second PUT of the same block touches it (no new copy).
    let r = request(port, "PUT", &format!("/{hash}"), None, &data);
    assert_eq!(r.status, 200);
    assert_eq!(c.locate(&hash).len(), 1);
}

#[test]
fn stalled_synthetic_get_holds_no_whole_block() {
    // A 3 MiB synthetic block served with stall_mid_body: exactly half arrives.
    let c = source();
    let set = c.block_set.clone().expect("set");
    let (hash, size) = set.blocks().find(|&(_, s)| s > 2 << 20).expect("big block");
    let server = c.locate(&hash.to_string())[0].keepstore;
    c.set_faults(
        server,
        keepsim::Faults {
            stall_mid_body: true,
            ..keepsim::Faults::default()
        },
    );
    let token = c.config.system_root_token.clone();
    let signed = sign_locator(
        &format!("{hash}+{size}"),
        &token,
        c.config.blob_signing_key.as_bytes(),
        u64::MAX >> 33,
        c.config.blob_signing_ttl,
    );
    let mut stream = send(
        c.keepstore_ports[server],
        "GET",
        &format!("/{signed}"),
        Some(&token),
        b"",
    );
    let (raw, ending) = read_until(&mut stream, Duration::from_millis(500), usize::MAX);
    assert_eq!(ending, Ending::Silent);
    let reply = common::parse(&raw);
    assert_eq!(reply.body.len() as u64, size / 2);
}

#[test]
fn per_keepstore_synthetic_blocks_of_the_synthetic_flag() {
    let mut config = ClusterConfig::new("synth", 2);
    config.blob_signing = false;
    config.synthetic = Some((5, 3000, 7));
    let c = Cluster::start(config).expect("starts");
    let token = c.config.system_root_token.clone();
    let mut all = BTreeSet::new();
    for k in 0..2 {
        let listed = c.blocks_on(k);
        assert_eq!(listed.len(), 5);
        for loc in listed {
            assert!(loc.ends_with("+3000"));
            let r = request(c.keepstore_ports[k], "GET", &format!("/{loc}"), None, b"");
            assert_eq!((r.status, md5_hex(&r.body)), (200, loc[..32].to_string()));
            all.insert(loc);
        }
        let mount = &c.keepstores[k].mounts[0].uuid;
        let r = request(
            c.keepstore_ports[k],
            "GET",
            &format!("/mounts/{mount}/blocks"),
            Some(&token),
            b"",
        );
        assert_eq!(r.text().lines().filter(|l| !l.is_empty()).count(), 5);
    }
    assert_eq!(all.len(), 10, "each keepstore has its own blocks");
}
