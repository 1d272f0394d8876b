//! The test vectors of `keep-protocol.md` §10, one test each, plus error paths and
//! property tests for the protocol core.

use super::discovery::{default_storage_classes, DiscoveryDoc};
use super::index_format::{parse_index_line, IndexBodyParser, IndexEntry, IndexError};
use super::locator::{parse_keepstore, BlockHash, Locator, LocatorError};
use super::rendezvous::{mount_order_keepstore, probe_order_go, probe_order_python};
use super::services::{KeepServiceList, Roots, ServiceType};
use super::settings::{parse_settings, settings_path, SettingsError};
use super::signature::{sign_locator, signature_hex, verify_locator, SignatureError};
use proptest::prelude::*;
use std::path::Path;

const K1: &str = "13u9fkuccnboeewr0ne3mvapk28epf68a3bhj9q8sb4l6e4e5mkkp6nhj2mmpscgu1zze5h5enydxfe3j215024u16ij4hjaiqs5u4pzsl3nczmaoxncljkm4875xqn4xv058koz3vkptmzhyheiy6wzevzjmdvxhvcqsvr5abhl15c2d4o4jhl0s91lojy1mtrzqqvprqcverls0xvy9vai9t1l1lvvazpuadafm71jl4mrwq2ygokee3eamvjy8qq1fvy238838enjmy5wzy2md7yvsitp5vztft6j4q866efym7e6vu5wm9fpnwjyxfldw3vbo01mgjs75rgo7qioh8z8ij7jpyp8508okhgbbex3ceei786u5rw2a9gx743dj3fgq2irk";
const T1: &str = "hocfupkn2pjhrpgp2vxv8rsku7tvtx49arbc9s4bvu7p7wxqvk";
const FOO: &str = "acbd18db4cc2f85cedef654fccc4a4d8";

#[test]
fn k1_is_397_chars() {
    assert_eq!(K1.len(), 397);
}

/// A key made once signs every locator as the one-shot functions do (its HMAC state is
/// copied per signature, never carried from one to the next).
#[test]
fn a_reused_signing_key_signs_like_a_fresh_one() {
    let key = super::signature::SigningKey::new(K1.as_bytes());
    for _ in 0..3 {
        assert_eq!(
            key.signature_hex(FOO, T1, 0x7fffffff, 1209600),
            "89118b78732c33104a4d6231e8b5a5fa1e4301e3"
        );
    }
    assert!(key.is(K1.as_bytes()));
    assert!(!key.is(b"another key"));
    assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    let empty = super::signature::SigningKey::new(b"");
    assert_eq!(
        empty.sign_locator(&format!("{FOO}+3"), T1, 1, 1),
        format!("{FOO}+3")
    );
}

#[test]
fn vector_s1() {
    assert_eq!(
        signature_hex(FOO, T1, K1.as_bytes(), 0x7fffffff, 1209600),
        "89118b78732c33104a4d6231e8b5a5fa1e4301e3"
    );
    let signed = sign_locator(&format!("{FOO}+3"), T1, K1.as_bytes(), 0x7fffffff, 1209600);
    assert_eq!(
        signed,
        format!("{FOO}+3+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff")
    );
    let sig = "+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff";
    let now = 1_700_000_000;
    for variant in [
        format!("{FOO}+3{sig}"),
        format!("{FOO}+999999{sig}"),
        format!("{FOO}{sig}"),
        format!("{FOO}+K@xyzzy{sig}"),
        format!("{FOO}+3{sig}+Zfoo"),
    ] {
        assert_eq!(
            verify_locator(&variant, T1, K1.as_bytes(), 1209600, now),
            Ok(()),
            "{variant}"
        );
    }
    let signed = format!("{FOO}+3{sig}");
    assert_eq!(
        verify_locator(&signed, T1, b"00000000000000000000", 1209600, now),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_locator(&signed, "00000000", K1.as_bytes(), 1209600, now),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_locator(
            &format!("{FOO}+3+Aaaaa@7fffffff"),
            T1,
            K1.as_bytes(),
            1209600,
            now
        ),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        verify_locator(
            &format!("{FOO}+3+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@OOOOOOOl"),
            T1,
            K1.as_bytes(),
            1209600,
            now
        ),
        Err(SignatureError::Missing)
    );
    assert_eq!(SignatureError::Missing.http_status(), 400);
    assert_eq!(SignatureError::Expired.http_status(), 401);
}

#[test]
fn vector_s2() {
    assert_eq!(
        signature_hex(FOO, T1, K1.as_bytes(), 0x7fffffff, 0),
        "f0620d8b662572b752ad449826e4efa365c10adf"
    );
}

#[test]
fn vector_s3() {
    let token = "v2/zzzzz-gj3su-077z32aux8dg2s1/3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi";
    assert_eq!(
        signature_hex(
            "37b51d194a7513e45b56f6524f2d51f2",
            token,
            b"abcdefg",
            1700000000,
            1209600
        ),
        "7fc9535b1e378f56429d2dd86291126373d87d25"
    );
}

#[test]
fn vector_s4() {
    assert_eq!(
        signature_hex(
            "d41d8cd98f00b204e9800998ecf8427e",
            "mytoken",
            b"secret",
            1705032704,
            7200
        ),
        "0c14d167f05d08c73af1456faff00618c9360fac"
    );
}

#[test]
fn vector_s5() {
    assert_eq!(
        signature_hex(
            "7f614da9329cd3aebf59b91aadc30bf0",
            "systemroottoken",
            b"blobsigningkey123",
            1767225600,
            1209600
        ),
        "ef87ed197cfd8e27edf18681aaeb08952244be8f"
    );
}

#[test]
fn vector_s6() {
    assert_eq!(
        signature_hex(FOO, "x", b"k", 1, 1),
        "f543ed1c5987fc7a0987e4a3ab918abf458292ce"
    );
    let signed = sign_locator(FOO, "x", b"k", 1, 1);
    assert_eq!(
        verify_locator(&signed, "x", b"k", 1, 2),
        Err(SignatureError::Expired)
    );
}

#[test]
fn non_ascii_hints_do_not_panic_the_verifier() {
    // Regression (found by fuzzing): slicing `part[1..]` split a multi-byte character.
    for locator in [
        format!("{FOO}+\u{85}\u{85}"),
        "d41d8cd98f00b204e9800998ecf8427e+é".to_string(),
    ] {
        assert_eq!(super::signature::find_signature(&locator), None);
        assert_eq!(
            verify_locator(&locator, "t", b"k", 1, 1),
            Err(SignatureError::Missing)
        );
    }
}

#[test]
fn malformed_service_hosts_are_refused() {
    // Regression (found by fuzzing): "k/" became the root "http://k/:2".
    for host in ["k/", "a b", "h?x", "", "u@h"] {
        let json =
            format!(r#"{{"items":[{{"uuid":"x","service_host":"{host}","service_port":2}}]}}"#);
        assert!(KeepServiceList::from_json(&json).is_err(), "{host:?}");
    }
    assert!(KeepServiceList::from_json(
        r#"{"items":[{"uuid":"x","service_host":"::1","service_port":2}]}"#
    )
    .is_ok());
}

#[test]
fn finish_after_a_failed_feed_is_an_error() {
    let mut parser = IndexBodyParser::new(None);
    assert!(parser.feed(b"\n\nextra", |_| {}).is_err());
    assert!(parser.finish().is_err());
}

#[test]
fn signing_without_key_or_token_is_a_no_op() {
    assert_eq!(sign_locator("x+1", "t", b"", 1, 1), "x+1");
    assert_eq!(
        sign_locator(&format!("{FOO}+3"), "", b"k", 1, 1),
        format!("{FOO}+3")
    );
}

fn uuids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:015}")).collect()
}

fn order(hash: &str, list: &[String]) -> Vec<usize> {
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    probe_order_go(hash, &refs)
}

#[test]
fn vector_r1() {
    assert_eq!(order(FOO, &uuids("zzzzz-bi6l4-", 3)), vec![0, 2, 1]);
}

#[test]
fn vector_r2() {
    let list = vec![
        "zzzzz-bi6l4-123456789012340".to_string(),
        "zzzzz-bi6l4-123456789012341".to_string(),
    ];
    assert_eq!(order("37b51d194a7513e45b56f6524f2d51f2", &list), vec![0, 1]);
}

#[test]
fn vector_r3() {
    assert_eq!(
        order(
            "d41d8cd98f00b204e9800998ecf8427e",
            &uuids("xyzzy-bi6l4-", 5)
        ),
        vec![1, 0, 3, 4, 2]
    );
}

#[test]
fn vector_r4() {
    assert_eq!(
        order(
            "9b662d28aa25e7709afc7194a719996a",
            &uuids("zzzzz-bi6l4-", 8)
        ),
        vec![0, 1, 3, 2, 7, 6, 5, 4]
    );
}

#[test]
fn vector_r5() {
    let list: Vec<String> = (1..=4)
        .map(|i| format!("abcde-bi6l4-keepstore00000{i}"))
        .collect();
    assert_eq!(
        order("d41d8cd98f00b204e9800998ecf8427e", &list),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn vector_r6() {
    assert_eq!(
        order(
            "7f614da9329cd3aebf59b91aadc30bf0",
            &uuids("zzzzz-bi6l4-", 4)
        ),
        vec![0, 1, 3, 2]
    );
}

#[test]
fn vector_r7() {
    use md5::{Digest, Md5};
    let list: Vec<String> = (0..16).map(|j| format!("zzzzz-bi6l4-{j:015x}")).collect();
    let expected = [
        "3eab2d5fc9681074",
        "097dba52e648f1c3",
        "c5b4e023f8a7d691",
        "9d81c02e76a3bf54",
    ];
    for (i, want) in expected.iter().enumerate() {
        let digest: [u8; 16] = Md5::digest(format!("{i:064x}").as_bytes()).into();
        let hash = BlockHash(digest).to_string();
        let got: String = order(&hash, &list)
            .iter()
            .map(|&k| format!("{k:x}"))
            .collect();
        assert_eq!(&got, want, "i={i}");
    }
}

#[test]
fn vector_r8() {
    let a = "zzzzz-bi6l4-0123456789abcdef";
    let b = "zzzzz-bi6l4-fedcba9876543210";
    let c = "zzzzz-bi6l4-00000000000000001";
    assert_eq!(probe_order_python(FOO, &[a, b, c]), vec![1, 0, 2]);
    assert_eq!(probe_order_go(FOO, &[a, b, c]), vec![2, 1, 0]);
}

#[test]
fn vector_r9() {
    let list = [
        "aaaaa-bi6l4-000000000000001",
        "bbbbb-bi6l4-000000000000001",
        "aaaaa-bi6l4-000000000000002",
    ];
    assert_eq!(probe_order_python(FOO, &list), vec![2, 0, 1]);
    assert_eq!(
        probe_order_go(FOO, &list),
        vec![2, 0, 1],
        "ties keep input order here"
    );
}

#[test]
fn vector_r10() {
    let json = r#"{"items":[
      {"uuid":"zzzzz-bi6l4-000000000000000","service_host":"h","service_port":1,"service_ssl_flag":false,"service_type":"disk","read_only":false},
      {"uuid":"zzzzz-bi6l4-000000000000001","service_host":"h","service_port":2,"service_ssl_flag":false,"service_type":"disk","read_only":true},
      {"uuid":"zzzzz-bi6l4-000000000000002","service_host":"h","service_port":3,"service_ssl_flag":false,"service_type":"disk","read_only":false}]}"#;
    let roots = Roots::from_list(&KeepServiceList::from_json(json).unwrap());
    let writable: Vec<&str> = roots
        .writable
        .iter()
        .map(|&i| roots.local[i].uuid.as_str())
        .collect();
    let order: Vec<&str> = probe_order_go(FOO, &writable)
        .into_iter()
        .map(|i| writable[i])
        .collect();
    assert_eq!(
        order,
        vec!["zzzzz-bi6l4-000000000000000", "zzzzz-bi6l4-000000000000002"]
    );
}

#[test]
fn vector_keepstore_mounts() {
    let mounts = ["zzzzz-nyw5e-000000000000000", "zzzzz-nyw5e-111111111111111"];
    assert_eq!(
        mount_order_keepstore("37b51d194a7513e45b56f6524f2d51f2", &mounts),
        vec![0, 1]
    );
}

fn parse_body(body: &[u8], prefix: Option<&str>) -> Result<Vec<IndexEntry>, IndexError> {
    let mut parser = IndexBodyParser::new(prefix.map(str::to_string));
    let mut out = Vec::new();
    parser.feed(body, |e| out.push(e))?;
    parser.finish()?;
    Ok(out)
}

#[test]
fn vector_index_bodies() {
    let one_mount = b"acfa7389fefb7e19272a7e33c67bb938+7 1700000123456789012\nacbd18db4cc2f85cedef654fccc4a4d8+3 1700000000000000001\nac0fed18514853bf60cad5df54ffcb91+7 1700000000500000000\n\n";
    let entries = parse_body(one_mount, Some("ac")).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1].hash.to_string(), FOO);
    assert_eq!(entries[1].size, 3);
    assert_eq!(entries[0].mtime_ns, 1700000123456789012);
    let two_mounts = b"37b51d194a7513e45b56f6524f2d51f2+3 1699996400000000000\n37b51d194a7513e45b56f6524f2d51f2+3 1699999940000000000\n\n";
    assert_eq!(parse_body(two_mounts, Some("37")).unwrap().len(), 2);
    assert_eq!(parse_body(b"\n", Some("ff")).unwrap().len(), 0);
    let truncated = b"37b51d194a7513e45b56f6524f2d51f2+3 1699996400000000000\n";
    assert!(matches!(
        parse_body(truncated, None),
        Err(IndexError::Incomplete { .. })
    ));
    assert!(matches!(
        parse_body(b"", None),
        Err(IndexError::Incomplete { .. })
    ));
    assert!(matches!(
        parse_body(one_mount, Some("ab")),
        Err(IndexError::OutsidePrefix { .. })
    ));
    assert!(matches!(
        parse_body(b"\n\n", None),
        Err(IndexError::AfterEnd { .. })
    ));
    // Old servers sent seconds.
    assert_eq!(
        parse_index_line(format!("{FOO}+3 1700000000").as_bytes())
            .unwrap()
            .mtime_ns,
        1_700_000_000_000_000_000
    );
    for bad in [
        "",
        "x",
        &format!("{FOO}+3"),
        &format!("{FOO}+3 1 2"),
        &format!("{FOO} 1"),
        &format!("{FOO}+x 1"),
        &format!("{FOO}+3 x"),
        &format!("{FOO}+67108865 1"),
    ] {
        assert!(parse_index_line(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

#[test]
fn vector_keep_services_json() {
    let json = r#"{"kind":"arvados#keepServiceList","etag":"","self_link":"","offset":null,"limit":null,
 "items":[
  {"kind":"arvados#keepService","uuid":"zzzzz-bi6l4-123456789012340",
   "owner_uuid":"zzzzz-tpzed-123456789012345","service_host":"keep0.zzzzz.arvadosapi.com",
   "service_port":25107,"service_ssl_flag":false,"service_type":"disk","read_only":false},
  {"uuid":"zzzzz-bi6l4-123456789012341","service_host":"keep0.zzzzz.arvadosapi.com",
   "service_port":25108,"service_ssl_flag":false,"service_type":"disk","read_only":false}],
 "items_available":2}"#;
    let list = KeepServiceList::from_json(json).unwrap();
    let roots = Roots::from_list(&list);
    let urls: Vec<&str> = roots.local.iter().map(|r| r.base_url.as_str()).collect();
    assert_eq!(
        urls,
        vec![
            "http://keep0.zzzzz.arvadosapi.com:25107",
            "http://keep0.zzzzz.arvadosapi.com:25108"
        ]
    );
    assert_eq!(roots.writable, vec![0, 1]);
    assert_eq!(roots.replicas_per_service(), Some(1));
    assert_eq!(roots.local[0].service_type, ServiceType::Disk);
}

#[test]
fn services_rules() {
    let json = r#"{"items":[
      {"uuid":"a","service_host":"h","service_port":1,"service_ssl_flag":true,"service_type":"proxy","read_only":false},
      {"uuid":"b","service_host":"h","service_port":1,"service_ssl_flag":true,"service_type":"disk","read_only":false},
      {"uuid":"c","service_host":"h","service_port":2,"service_type":"gateway:x","read_only":true}]}"#;
    let roots = Roots::from_list(&KeepServiceList::from_json(json).unwrap());
    assert_eq!(roots.local.len(), 2, "same URL twice keeps the first uuid");
    assert_eq!(roots.local[0].uuid, "a");
    assert_eq!(roots.local[0].base_url, "https://h:1");
    assert_eq!(roots.writable, vec![0]);
    assert_eq!(roots.replicas_per_service(), None);
    assert!(KeepServiceList::from_json("{").is_err());
    assert!(KeepServiceList::from_json(r#"{"items":[{"uuid":"a"}]}"#).is_err());
    assert!(KeepServiceList::from_json(
        r#"{"items":[{"uuid":"a","service_host":"","service_port":1}]}"#
    )
    .is_err());
}

#[test]
fn locators_strict_and_lenient() {
    let loc = Locator::parse(&format!("{FOO}+3+K@xyzzy+Ab@c+Zfoo")).unwrap();
    assert_eq!(loc.size, Some(3));
    assert_eq!(loc.hints, vec!["K@xyzzy", "Ab@c", "Zfoo"]);
    assert_eq!(loc.signature_hint(), Some("b@c"));
    assert_eq!(loc.keep_hints().collect::<Vec<_>>(), vec!["xyzzy"]);
    assert_eq!(loc.to_string(), format!("{FOO}+3+K@xyzzy+Ab@c+Zfoo"));
    assert_eq!(loc.short(), format!("{FOO}+3"));
    assert!(matches!(
        Locator::parse(&FOO.to_uppercase()),
        Err(LocatorError::BadHash(_))
    ));
    assert!(matches!(
        Locator::parse(&format!("{FOO}+67108865")),
        Err(LocatorError::TooLarge(_))
    ));
    assert!(matches!(
        Locator::parse(&format!("{FOO}++3")),
        Err(LocatorError::EmptyPart(_))
    ));
    assert!(matches!(
        Locator::parse(&format!("{FOO}+3+")),
        Err(LocatorError::EmptyPart(_))
    ));
    assert!(matches!(
        Locator::parse(&format!("{FOO}+3+zz")),
        Err(LocatorError::BadHint(_))
    ));
    assert!(Locator::parse(&format!("{FOO}+3x")).is_err());
    // A leading zero in the size is accepted (as Go's Atoi does) and formats canonically.
    let padded = Locator::parse(&format!("{FOO}+07")).unwrap();
    assert_eq!(
        (padded.size, padded.to_string()),
        (Some(7), format!("{FOO}+7"))
    );
    // keepstore: size unknown when not decimal, later numeric parts invalid, hints unchecked.
    let k = parse_keepstore(&format!("{FOO}+Afoo@bar+Rzzzzz-x+ünïcode")).unwrap();
    assert_eq!((k.size, k.signed, k.remote), (None, true, true));
    assert!(parse_keepstore(&format!("{FOO}+3+4")).is_err());
    assert!(parse_keepstore(&format!("+{FOO}")).is_err());
    assert_eq!(parse_keepstore(&format!("{FOO}+3")).unwrap().size, Some(3));
}

#[test]
fn settings_files() {
    let text = "ARVADOS_API_HOST = example.com:443 \r\nARVADOS_API_TOKEN=tok=en\r\n\r\nOTHER=1\nARVADOS_API_HOST_INSECURE=Yes\nARVADOS_BLOB_SIGNING_KEY=key\n";
    let s = parse_settings(text).unwrap();
    assert_eq!(s.api_host, "example.com:443");
    assert_eq!(s.api_token, "tok=en");
    assert!(s.api_host_insecure);
    assert_eq!(s.blob_signing_key.as_deref(), Some("key"));
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("tok=en") && !debug.contains("key\""),
        "{debug}"
    );
    assert_eq!(
        parse_settings("A=1\nB=2\nnot a setting\n"),
        Err(SettingsError::NoEquals { line: 3 })
    );
    assert!(
        !parse_settings("ARVADOS_API_HOST_INSECURE=t")
            .unwrap()
            .api_host_insecure,
        "Go accepts only 1/yes/true"
    );
    assert_eq!(
        settings_path("foo", Path::new("/home/u")),
        Path::new("/home/u/.config/arvados/foo.conf")
    );
    assert_eq!(
        settings_path("./foo", Path::new("/home/u")),
        Path::new("./foo")
    );
}

#[test]
fn discovery_documents() {
    let doc = DiscoveryDoc::from_json(
        r#"{"defaultCollectionReplication":2,"blobSignatureTtl":1209600,"other":1}"#,
    )
    .unwrap();
    assert_eq!(doc.default_collection_replication, Some(2));
    assert_eq!(doc.blob_signature_ttl, Some(1209600));
    assert_eq!(
        DiscoveryDoc::from_json("{}").unwrap(),
        DiscoveryDoc::default()
    );
    assert_eq!(
        default_storage_classes(
            r#"{"StorageClasses":{"hot":{"Default":true},"cold":{"Default":false},"a":{"Default":true}}}"#
        ),
        vec!["a", "hot"]
    );
    assert!(default_storage_classes("nonsense").is_empty());
}

fn hint_strategy() -> impl Strategy<Value = String> {
    "[A-Z][A-Za-z0-9@_-]{0,12}"
}

proptest! {
    #[test]
    fn locator_round_trip(hash in proptest::array::uniform16(any::<u8>()), size in proptest::option::of(0u64..=67_108_864), hints in proptest::collection::vec(hint_strategy(), 0..4)) {
        let loc = Locator { hash: BlockHash(hash), size, hints };
        let text = loc.to_string();
        prop_assert_eq!(Locator::parse(&text).unwrap(), loc);
    }

    #[test]
    fn verify_after_sign(key in "[a-z0-9]{1,64}", token in "[a-zA-Z0-9/-]{1,60}", expiry in 1u64..0xffff_ffff, ttl in 0u64..10_000_000, hash in proptest::array::uniform16(any::<u8>())) {
        let locator = format!("{}+5", BlockHash(hash));
        let signed = sign_locator(&locator, &token, key.as_bytes(), expiry, ttl);
        prop_assert_eq!(verify_locator(&signed, &token, key.as_bytes(), ttl, expiry), Ok(()));
        prop_assert_eq!(verify_locator(&signed, &token, key.as_bytes(), ttl + 1, expiry), Err(SignatureError::Invalid));
        let other_token = format!("{token}x");
        prop_assert_eq!(verify_locator(&signed, &other_token, key.as_bytes(), ttl, expiry), Err(SignatureError::Invalid));
        prop_assert_eq!(verify_locator(&signed, &token, key.as_bytes(), ttl, expiry + 1), Err(SignatureError::Expired));
    }

    #[test]
    fn index_body_split_anywhere(entries in proptest::collection::vec((proptest::array::uniform16(any::<u8>()), 0u64..100_000, 1_000_000_000_000i64..2_000_000_000_000_000_000), 0..20), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let mut body = Vec::new();
        for (h, s, m) in &entries {
            body.extend_from_slice(super::index_format::format_index_line(&BlockHash(*h), *s, *m).as_bytes());
        }
        body.push(b'\n');
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        points.sort_unstable();
        let mut parser = IndexBodyParser::new(None);
        let mut got = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(body.len())) {
            parser.feed(&body[last..p], |e| got.push((e.hash.0, e.size, e.mtime_ns))).unwrap();
            last = p;
        }
        prop_assert!(parser.finish().is_ok());
        prop_assert_eq!(got, entries);
    }

}

/// The index line parser's fast paths (eight digits at once, table hex) against the plain
/// definitions: any text of digits and near-digits, any 32 bytes of near-hex.
mod fast_parsing {
    use super::*;

    fn plain_decimal(text: &str) -> Option<u64> {
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    proptest! {
        #[test]
        fn sizes_and_mtimes_parse_as_plain_decimal(
            size in "[0-9/:]{0,21}",
            mtime in "-?[0-9/:a]{0,21}",
        ) {
            let line = format!("{}+{size} {mtime}", "a".repeat(32));
            let got = parse_index_line(line.as_bytes());
            let digits = mtime.strip_prefix('-').unwrap_or(&mtime);
            let want_size = plain_decimal(&size).filter(|&s| s <= super::super::locator::MAX_BLOCK_SIZE);
            let want_mtime = plain_decimal(digits).and_then(|m| i64::try_from(m).ok());
            let want_mtime = want_mtime.and_then(|m| {
                let m = if mtime.starts_with('-') { -m } else { m };
                if m.abs() < 1_000_000_000_000 { m.checked_mul(1_000_000_000) } else { Some(m) }
            });
            match (want_size, want_mtime) {
                (Some(s), Some(m)) => {
                    let entry = got.expect("valid line");
                    prop_assert_eq!(entry.size, s);
                    prop_assert_eq!(entry.mtime_ns, m);
                }
                _ => prop_assert!(got.is_err()),
            }
        }

        #[test]
        fn hashes_parse_as_plain_hex(text in "[0-9a-gA-F/:`]{32}") {
            let want = text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let got = BlockHash::from_hex_bytes(text.as_bytes());
            prop_assert_eq!(got.is_some(), want);
            if let Some(hash) = got {
                prop_assert_eq!(hash.to_string(), text);
            }
        }
    }
}
