//! keepsim against keepstore's own rules (services/keepstore), over real sockets: corrupt
//! stored copies on GET and HEAD, trash and untrash, DELETE and TOUCH, storage classes on
//! PUT and in `/mounts`, one mount served by several keepstores, and the pull worker.

mod common;

use std::time::Duration;

use common::{eventually, md5_hex, read_until, request, request_with, send, Ending};
use keepsim::{Cluster, ClusterConfig, SharedMount, StorageClass};

fn unsigned(id: &str, keepstores: usize) -> ClusterConfig {
    let mut config = ClusterConfig::new(id, keepstores);
    config.blob_signing = false;
    config
}

#[test]
fn corrupt_copies_are_cut_short_on_get_and_502_on_head() {
    let c = Cluster::start(unsigned("fidel", 1)).expect("starts");
    let port = c.keepstore_ports[0];
    let big = keepsim::pseudo_random_bytes(1, 200_000);
    let loc = c.put_block(0, &big).expect("stored");
    assert_eq!(
        request(port, "HEAD", &format!("/{loc}"), None, b"").status,
        200
    );
    assert!(c.corrupt_block(0, &loc));
    // keepstore sends 64 KiB parts and withholds the one that completes the block.
    let mut stream = send(port, "GET", &format!("/{loc}"), None, b"");
    let (raw, ending) = read_until(&mut stream, Duration::from_secs(5), usize::MAX);
    assert_eq!(ending, Ending::Eof);
    let reply = common::parse(&raw);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length").as_deref(), Some("200000"));
    assert_eq!(reply.body.len(), 3 * 65536);
    assert_eq!(
        request(port, "HEAD", &format!("/{loc}"), None, b"").status,
        502
    );
    // A small corrupt block: not one byte could be sent, so the status says it.
    let small = c.put_block(0, b"small block").expect("stored");
    assert!(c.corrupt_block(0, &small));
    let r = request(port, "GET", &format!("/{small}"), None, b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (502, "checksum mismatch in stored data\n")
    );
    // A wrong size hint on a good copy: HEAD 502, GET cut.
    let good = c
        .put_block(0, &keepsim::pseudo_random_bytes(2, 1000))
        .expect("stored");
    let hash = &good[..32];
    assert_eq!(
        request(port, "HEAD", &format!("/{hash}+999"), None, b"").status,
        502
    );
    assert_eq!(
        request(port, "HEAD", &format!("/{hash}"), None, b"").status,
        200
    );
    assert_eq!(
        request(port, "GET", &format!("/{hash}+1001"), None, b"")
            .body
            .len(),
        1000
    );
}

#[test]
fn trash_untrash_delete_touch_by_keepstore_rules() {
    let mut config = unsigned("trash", 1);
    config.blob_signing_ttl = 3600;
    let c = Cluster::start(config).expect("starts");
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let loc = c.put_block(0, b"trash candidate").expect("stored");
    let mtime = || c.locate(&loc)[0].mtime_ns;
    let list = |m: i64| {
        serde_json::json!([{"locator": loc, "block_mtime": m, "mount_uuid": ""}]).to_string()
    };
    // Too young: skipped.
    let r = request(
        port,
        "PUT",
        "/trash",
        Some(&token),
        list(mtime()).as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(2), || c
        .trash_stats(0)
        .skipped
        == 1));
    assert_eq!(c.locate(&loc).len(), 1);
    // Old, but the mtime does not match exactly: skipped.
    assert_eq!(c.age_block(0, &loc, Duration::from_secs(7200)), 1);
    let old = mtime();
    request(
        port,
        "PUT",
        "/trash",
        Some(&token),
        list(old - 1).as_bytes(),
    );
    assert!(eventually(Duration::from_secs(2), || c
        .trash_stats(0)
        .skipped
        == 2));
    assert_eq!(c.locate(&loc).len(), 1);
    // Exact: trashed, gone from the index.
    request(port, "PUT", "/trash", Some(&token), list(old).as_bytes());
    assert!(eventually(Duration::from_secs(2), || c.trash_stats(0).done == 1));
    assert!(c.locate(&loc).is_empty());
    assert_eq!(
        request(port, "GET", "/index", Some(&token), b"").text(),
        "\n"
    );
    // Untrash restores it with its mtime; a second untrash finds nothing.
    let r = request(port, "PUT", &format!("/untrash/{loc}"), Some(&token), b"");
    assert_eq!(r.status, 200);
    assert_eq!(mtime(), old);
    assert_eq!(
        request(port, "PUT", &format!("/untrash/{loc}"), Some(&token), b"").status,
        404
    );
    // DELETE: a young copy is left alone (still 200), an old one is trashed.
    let young = c.put_block(0, b"young").expect("stored");
    assert_eq!(
        request(port, "DELETE", &format!("/{young}"), Some(&token), b"").status,
        200
    );
    assert_eq!(c.locate(&young).len(), 1);
    assert_eq!(
        request(port, "DELETE", &format!("/{loc}"), Some(&token), b"").status,
        200
    );
    assert!(c.locate(&loc).is_empty());
    assert_eq!(
        request(port, "DELETE", &format!("/{loc}"), Some(&token), b"").status,
        404
    );
    assert_eq!(
        request(port, "DELETE", &format!("/{loc}"), None, b"").status,
        401
    );
    // TOUCH sets the mtime to now.
    c.age_block(0, &young, Duration::from_secs(9000));
    let before = c.locate(&young)[0].mtime_ns;
    assert_eq!(
        request(port, "TOUCH", &format!("/{young}"), Some(&token), b"").status,
        200
    );
    assert!(c.locate(&young)[0].mtime_ns > before);
    assert_eq!(
        request(port, "TOUCH", &format!("/{loc}"), Some(&token), b"").status,
        404
    );
    // Lists: bad JSON is 500.
    assert_eq!(
        request(port, "PUT", "/trash", Some(&token), b"{").status,
        500
    );
}

#[test]
fn a_read_only_mount_is_trashed_only_when_named_and_allowed() {
    let mut config = unsigned("ronly", 1);
    config.mounts_per_keepstore = 2;
    config.blob_signing_ttl = 3600;
    let c = Cluster::start(config).expect("starts");
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let data = b"on both mounts";
    let loc = c.put_block_on_mount(0, 0, data).expect("stored");
    c.put_block_on_mount(0, 1, data).expect("stored");
    c.age_block(0, &loc, Duration::from_secs(7200));
    let mtime = c.locate(&loc)[0].mtime_ns;
    let (ro, rw) = (
        c.keepstores[0].mounts[0].uuid.clone(),
        c.keepstores[0].mounts[1].uuid.clone(),
    );
    let allow_trash = || -> Vec<bool> {
        let body = request(port, "GET", "/mounts", Some(&token), b"").body;
        let mounts: serde_json::Value = serde_json::from_slice(&body).expect("mounts JSON");
        mounts
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["allow_trash"].as_bool().unwrap_or(true))
            .collect()
    };
    let trash = |mount: &str| {
        let list = serde_json::json!([{"locator": loc, "block_mtime": mtime, "mount_uuid": mount}]);
        let r = request(
            port,
            "PUT",
            "/trash",
            Some(&token),
            list.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200);
    };
    let held = || -> Vec<String> { c.locate(&loc).into_iter().map(|h| h.mount).collect() };
    assert!(c.set_mount_read_only(&ro, true, false));
    assert_eq!(allow_trash(), vec![false, true]);
    // Named, read-only without AllowTrashWhenReadOnly: skipped.
    trash(&ro);
    assert!(eventually(Duration::from_secs(2), || c
        .trash_stats(0)
        .skipped
        == 1));
    assert_eq!(held().len(), 2);
    // Unnamed: the writable mounts only.
    trash("");
    assert!(eventually(Duration::from_secs(2), || c.trash_stats(0).done == 1));
    assert_eq!(held(), vec![ro.clone()]);
    // With AllowTrashWhenReadOnly, naming it trashes it.
    assert!(c.set_mount_read_only(&ro, true, true));
    assert_eq!(allow_trash(), vec![true, true]);
    trash(&ro);
    assert!(eventually(Duration::from_secs(2), || c.trash_stats(0).done == 2));
    assert!(held().is_empty(), "{:?} (writable was {rw})", held());
}

#[test]
fn trash_off_and_lists_replace_the_queue() {
    let mut config = unsigned("noblo", 1);
    config.blob_trash = false;
    let c = Cluster::start(config).expect("starts");
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let loc = c.put_block(0, b"kept").expect("stored");
    assert_eq!(
        request(port, "DELETE", &format!("/{loc}"), Some(&token), b"").status,
        405
    );
    // No workers run with BlobTrash off: the queue shows each list replacing the last.
    let three = serde_json::json!([
        {"locator": loc, "block_mtime": 1}, {"locator": loc, "block_mtime": 2},
        {"locator": loc, "block_mtime": 3}]);
    assert_eq!(
        request(
            port,
            "PUT",
            "/trash",
            Some(&token),
            three.to_string().as_bytes()
        )
        .status,
        200
    );
    assert_eq!(c.trash_stats(0).queued, 3);
    let one = serde_json::json!([{"locator": loc, "block_mtime": 1}]);
    request(
        port,
        "PUT",
        "/trash",
        Some(&token),
        one.to_string().as_bytes(),
    );
    assert_eq!(c.trash_stats(0).queued, 1);
    request(port, "PUT", "/trash", Some(&token), b"[]");
    assert_eq!(c.trash_stats(0).queued, 0);
    assert_eq!(c.locate(&loc).len(), 1);
}

#[test]
fn storage_classes_on_put_and_in_mounts() {
    let mut config = unsigned("class", 1);
    config.mounts_per_keepstore = 3;
    config.mount_classes = vec![
        vec!["default".into()],
        vec!["hot".into()],
        vec!["hot".into(), "cold".into()],
    ];
    config.storage_classes = vec![
        StorageClass::new("default", true, 0),
        StorageClass::new("hot", false, 0),
        StorageClass::new("cold", false, 0),
    ];
    let c = Cluster::start(config).expect("starts");
    let port = c.keepstore_ports[0];
    let token = c.config.system_root_token.clone();
    let mounts: serde_json::Value =
        serde_json::from_slice(&request(port, "GET", "/mounts", Some(&token), b"").body)
            .expect("mounts JSON");
    let classes: Vec<serde_json::Value> = mounts
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["storage_classes"].clone())
        .collect();
    assert_eq!(
        classes,
        vec![
            serde_json::json!({"default": true}),
            serde_json::json!({"hot": true}),
            serde_json::json!({"cold": true, "hot": true}),
        ]
    );
    let put = |data: &[u8], classes: &str| {
        request_with(
            port,
            "PUT",
            &format!("/{}", md5_hex(data)),
            None,
            &[("X-Keep-Storage-Classes", classes)],
            data,
        )
    };
    let r = put(b"for cold", "cold");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-keep-storage-classes-confirmed").as_deref(),
        Some("cold=1, hot=1")
    );
    assert_eq!(
        c.locate(&md5_hex(b"for cold"))[0].mount,
        c.keepstores[0].mounts[2].uuid
    );
    // default + hot: two mounts needed, counted per class.
    let r = put(b"for two", " default , hot ,");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-keep-replicas-stored").as_deref(), Some("2"));
    let confirmed = r
        .header("x-keep-storage-classes-confirmed")
        .expect("header");
    assert!(confirmed.contains("default=1"), "{confirmed}");
    assert_eq!(c.locate(&md5_hex(b"for two")).len(), 2);
    // No mount in the class: 507.
    let r = put(b"nowhere", "archive");
    assert_eq!(
        (r.status, r.text().as_str()),
        (507, "insufficient storage\n")
    );
    // No class asked: one copy, on the first mount in keepstore order.
    let r = put(b"anywhere", "");
    assert_eq!(r.header("x-keep-replicas-stored").as_deref(), Some("1"));
}

#[test]
fn one_mount_behind_several_keepstores() {
    let mut config = unsigned("share", 3);
    config.mounts_per_keepstore = 0;
    config.shared_mounts = vec![SharedMount {
        keepstores: vec![0, 1, 2],
        replication: 1,
        classes: vec![],
    }];
    let c = Cluster::start(config).expect("starts");
    let token = c.config.system_root_token.clone();
    let uuid = c.keepstores[0].mounts[0].uuid.clone();
    for k in 0..3 {
        let mounts: serde_json::Value = serde_json::from_slice(
            &request(c.keepstore_ports[k], "GET", "/mounts", Some(&token), b"").body,
        )
        .expect("JSON");
        assert_eq!(mounts[0]["uuid"], uuid.as_str());
    }
    for n in 0..50 {
        let data = format!("shared block {n}");
        let r = request(
            c.keepstore_ports[n % 3],
            "PUT",
            &format!("/{}", md5_hex(data.as_bytes())),
            None,
            data.as_bytes(),
        );
        assert_eq!(r.status, 200);
    }
    let listings: Vec<String> = (0..3)
        .map(|k| request(c.keepstore_ports[k], "GET", "/index", Some(&token), b"").text())
        .collect();
    assert_eq!(listings[0].lines().filter(|l| !l.is_empty()).count(), 50);
    assert!(
        listings.iter().all(|l| *l == listings[0]),
        "every keepstore lists the bucket alike"
    );
    let lines: Vec<&str> = listings[0].lines().filter(|l| !l.is_empty()).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "S3-like: key order");
    assert_eq!(c.mount_index_requests(&uuid), 3);
    let r = request(
        c.keepstore_ports[1],
        "GET",
        &format!("/mounts/{uuid}/blocks?prefix=a"),
        Some(&token),
        b"",
    );
    assert!(r
        .text()
        .lines()
        .filter(|l| !l.is_empty())
        .all(|l| l.starts_with('a')));
    assert_eq!(c.mount_index_requests(&uuid), 4);
    assert_eq!(
        c.locate(&lines[0][..32]).len(),
        3,
        "held by all three keepstores"
    );
}

#[test]
fn pull_worker_follows_keepstore() {
    // Signing on: the pull GET is signed with the puller's own key for keepstore's token.
    let mut config = ClusterConfig::new("pulls", 3);
    config.mounts_per_keepstore = 2;
    let c = Cluster::start(config).expect("starts");
    let token = c.config.system_root_token.clone();
    let port = c.keepstore_ports[1];
    let data = keepsim::pseudo_random_bytes(5, 100_000);
    let loc = c.put_block(0, &data).expect("stored");
    // Refusals: no size on the first item (400), bad JSON (500), no token (401).
    let bare = serde_json::json!([{"locator": &loc[..32], "servers": [c.keepstore_url(0)]}]);
    assert_eq!(
        request(
            port,
            "PUT",
            "/pull",
            Some(&token),
            bare.to_string().as_bytes()
        )
        .status,
        400
    );
    assert_eq!(
        request(port, "PUT", "/pull", Some(&token), b"[{").status,
        500
    );
    assert_eq!(request(port, "PUT", "/pull", None, b"[]").status, 401);
    // Unknown mount: skipped. A server that is down, then the real one.
    let target = c.keepstores[1].mounts[1].uuid.clone();
    let list = serde_json::json!([
        {"locator": loc, "servers": [c.keepstore_url(0)], "mount_uuid": "pulls-nyw5e-nosuchmount0000"},
        {"locator": loc, "servers": ["http://127.0.0.1:9", c.keepstore_url(0)], "mount_uuid": target},
    ]);
    assert_eq!(
        request(
            port,
            "PUT",
            "/pull",
            Some(&token),
            list.to_string().as_bytes()
        )
        .status,
        200
    );
    assert!(
        eventually(Duration::from_secs(10), || c.pull_stats(1).done == 1),
        "{:?}",
        c.pull_stats(1)
    );
    assert_eq!(c.pull_stats(1).skipped, 1);
    let holders = c.locate(&loc);
    assert!(
        holders
            .iter()
            .any(|h| h.keepstore == 1 && h.mount == target),
        "{holders:?}"
    );
    assert_eq!(c.get_block(1, &loc).as_deref(), Some(data.as_slice()));
    // A corrupt source copy: the pull fails (MD5 checked).
    let other = c.put_block(0, b"corrupt me").expect("stored");
    assert!(c.corrupt_block(0, &other));
    let list = serde_json::json!([{"locator": other, "servers": [c.keepstore_url(0)]}]);
    request(
        c.keepstore_ports[2],
        "PUT",
        "/pull",
        Some(&token),
        list.to_string().as_bytes(),
    );
    assert!(eventually(Duration::from_secs(10), || c
        .pull_stats(2)
        .failed
        == 1));
    assert!(c.locate(&other).iter().all(|h| h.keepstore == 0));
}

#[test]
fn pull_across_clusters_over_https_needs_the_same_key() {
    let mut src = ClusterConfig::new("srcpl", 1);
    src.tls = true;
    let mut dst = ClusterConfig::new("dstpl", 1);
    dst.blob_signing_key = src.blob_signing_key.clone();
    let src = Cluster::start(src).expect("source");
    let dst = Cluster::start(dst).expect("destination");
    let loc = src.put_block(0, b"over https").expect("stored");
    let token = dst.config.system_root_token.clone();
    let list = serde_json::json!([{"locator": loc, "servers": [src.keepstore_url(0)]}]);
    assert!(src.keepstore_url(0).starts_with("https://"));
    let r = request(
        dst.keepstore_ports[0],
        "PUT",
        "/pull",
        Some(&token),
        list.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || dst.pull_stats(0).done == 1),
        "{:?}",
        dst.pull_stats(0)
    );
    assert_eq!(dst.locate(&loc).len(), 1);
    // Another key: the source refuses the signature, the pull fails.
    let stranger = Cluster::start(ClusterConfig::new("strng", 1)).expect("starts");
    let r = request(
        stranger.keepstore_ports[0],
        "PUT",
        "/pull",
        Some(&stranger.config.system_root_token),
        list.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(10), || stranger
        .pull_stats(0)
        .failed
        == 1));
    assert!(stranger.locate(&loc).is_empty());
}
