//! The shape of every keepstore request keepmover sends, and how each answer is read
//! (`keep-protocol.md` §5, §6): request builders for block GET, HEAD and PUT, index,
//! mounts, pull, trash, untrash and touch; the header names (keepsim answers with the same
//! constants); the classification of a status into found, not found, retry or final; and the
//! reply headers `X-Keep-Replicas-Stored` and `X-Keep-Storage-Classes-Confirmed`.
//!
//! Pure code: a [`WireRequest`] is a method, a path, headers and maybe a body; the HTTP layer
//! turns it into bytes on a socket.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::header_value::{self, HeaderValue};

/// Header names, spelled once.
pub mod header {
    pub const AUTHORIZATION: &str = "Authorization";
    pub const REQUEST_ID: &str = "X-Request-Id";
    pub const CONTENT_TYPE: &str = "Content-Type";
    pub const DESIRED_REPLICAS: &str = "X-Keep-Desired-Replicas";
    pub const STORAGE_CLASSES: &str = "X-Keep-Storage-Classes";
    pub const REPLICAS_STORED: &str = "X-Keep-Replicas-Stored";
    pub const CLASSES_CONFIRMED: &str = "X-Keep-Storage-Classes-Confirmed";
    pub const KEEP_LOCATOR: &str = "X-Keep-Locator";
}

/// `Content-Type` of a block PUT.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// `Content-Type` of pull and trash lists.
pub const JSON: &str = "application/json";
/// keep-balance's default cap on pull and trash list entries per keepstore
/// (`BalancePullLimit`, `BalanceTrashLimit`).
pub const LIST_LIMIT: usize = 100_000;
/// keepclient reads at most this much of an error body.
pub const ERROR_BODY_LIMIT: usize = 4096;

/// The methods keepstore routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireMethod {
    Get,
    Head,
    Put,
    Delete,
    /// keepstore's own `TOUCH` method.
    Touch,
}

impl WireMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            WireMethod::Get => "GET",
            WireMethod::Head => "HEAD",
            WireMethod::Put => "PUT",
            WireMethod::Delete => "DELETE",
            WireMethod::Touch => "TOUCH",
        }
    }
}

/// One request to a keepstore, before it becomes bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest {
    pub method: WireMethod,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// A JSON body (pull and trash lists); block bodies are passed separately, uncopied.
    pub body: Option<Vec<u8>>,
}

/// `Bearer <token>`: how every Keep client sends its token.
pub fn authorization(token: &str) -> String {
    [Bearer::PREFIX, token].concat()
}

/// A cluster's token, held as its `Authorization` value (`Bearer <token>`), made once and
/// shared by all its requests (a clone copies a pointer). `Debug` never shows the token.
#[derive(Clone)]
pub struct Bearer(Arc<str>);

impl Bearer {
    const PREFIX: &'static str = "Bearer ";

    pub fn new(token: &str) -> Bearer {
        Bearer(Arc::from(authorization(token)))
    }

    /// The token itself (for signing locators).
    pub fn token(&self) -> &str {
        self.0.get(Bearer::PREFIX.len()..).unwrap_or_default()
    }

    fn header_value(&self) -> HeaderValue {
        HeaderValue::Shared(self.0.clone())
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer <redacted>")
    }
}

/// An Arvados request id: `req-` and 20 base-36 characters, from 20 random bytes. Kept
/// inline: no allocation per request.
pub fn request_id(random: [u8; 20]) -> HeaderValue {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = [0u8; 24];
    id[..4].copy_from_slice(b"req-");
    for (digit, byte) in id[4..].iter_mut().zip(random) {
        *digit = ALPHABET[byte as usize % 36];
    }
    // ASCII by construction.
    HeaderValue::short(std::str::from_utf8(&id).unwrap_or("req-"))
}

fn request(method: WireMethod, path: String, bearer: &Bearer) -> WireRequest {
    // Room for a block PUT's five headers, so the pushes below do not reallocate.
    let mut headers = Vec::with_capacity(5);
    headers.push((header::AUTHORIZATION, bearer.header_value()));
    WireRequest {
        method,
        path,
        headers,
        body: None,
    }
}

/// `GET /<locator>` (the locator signed when the source enforces signatures, §6.2).
pub fn block_get(locator: &str, bearer: &Bearer, request_id: HeaderValue) -> WireRequest {
    let mut req = request(WireMethod::Get, ["/", locator].concat(), bearer);
    req.headers.push((header::REQUEST_ID, request_id));
    req
}

/// `HEAD /<locator>`: keepstore reads the whole block and checks its MD5 (§5.2).
pub fn block_head(locator: &str, bearer: &Bearer, request_id: HeaderValue) -> WireRequest {
    let mut req = request(WireMethod::Head, ["/", locator].concat(), bearer);
    req.headers.push((header::REQUEST_ID, request_id));
    req
}

/// `PUT /<hash>` with the Go client's headers (§6.1 step 4); the body goes alongside.
/// `hash_hex` is the block's 32 hex digits (a [`ShortLocator`](super::ShortLocator)'s
/// `hash_hex()`, made once per block).
pub fn block_put(
    hash_hex: &str,
    bearer: &Bearer,
    request_id: HeaderValue,
    desired_replicas: u32,
    classes: &[String],
) -> WireRequest {
    let mut req = request(WireMethod::Put, ["/", hash_hex].concat(), bearer);
    req.headers.push((header::REQUEST_ID, request_id));
    req.headers
        .push((header::CONTENT_TYPE, OCTET_STREAM.into()));
    req.headers.push((
        header::DESIRED_REPLICAS,
        header_value::count(desired_replicas),
    ));
    if !classes.is_empty() {
        req.headers
            .push((header::STORAGE_CLASSES, classes.join(", ").into()));
    }
    req
}

/// `GET /index/<prefix>`: every mount's blocks under the prefix (admin token).
pub fn index(prefix: &str, bearer: &Bearer) -> WireRequest {
    request(WireMethod::Get, format!("/index/{prefix}"), bearer)
}

/// `GET /mounts/<uuid>/blocks?prefix=<prefix>`: one mount's blocks (keep-balance's form).
pub fn mount_index(mount_uuid: &str, prefix: &str, bearer: &Bearer) -> WireRequest {
    request(
        WireMethod::Get,
        format!("/mounts/{mount_uuid}/blocks?prefix={prefix}"),
        bearer,
    )
}

/// `GET /mounts`.
pub fn mounts(bearer: &Bearer) -> WireRequest {
    request(WireMethod::Get, "/mounts".to_string(), bearer)
}

fn json_list<T: Serialize>(path: &str, items: &[T], bearer: &Bearer) -> WireRequest {
    let mut req = request(WireMethod::Put, path.to_string(), bearer);
    req.headers.push((header::CONTENT_TYPE, JSON.into()));
    // Serialising plain structs of strings and numbers cannot fail.
    req.body = Some(serde_json::to_vec(items).unwrap_or_else(|_| b"[]".to_vec()));
    req
}

/// `PUT /pull`: the list replaces the keepstore's queue (an empty list clears it).
pub fn pull(items: &[PullItem], bearer: &Bearer) -> WireRequest {
    json_list("/pull", items, bearer)
}

/// `PUT /trash`: the list replaces the keepstore's queue.
pub fn trash(items: &[TrashItem], bearer: &Bearer) -> WireRequest {
    json_list("/trash", items, bearer)
}

/// `PUT /untrash/<locator>`.
pub fn untrash(short_locator: &str, bearer: &Bearer) -> WireRequest {
    request(WireMethod::Put, format!("/untrash/{short_locator}"), bearer)
}

/// `TOUCH /<locator>`: sets the block's mtime to now on the first writable mount holding it.
pub fn touch(short_locator: &str, bearer: &Bearer) -> WireRequest {
    request(WireMethod::Touch, format!("/{short_locator}"), bearer)
}

/// What a status means for the block and the server that gave it (§6.1 step 6, §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Found,
    /// 404, 403, 410: this server does not have it (reads only; keepclient counts these).
    NotFound,
    /// 408, 429 and 5xx except 507: worth another round on the same server.
    Retry,
    /// Everything else (4xx, 507): final for this server; the next one may still work.
    Final,
}

/// Classifies a status the way keepclient does.
pub fn classify(status: u16) -> Answer {
    match status {
        200 => Answer::Found,
        404 | 403 | 410 => Answer::NotFound,
        s if is_retry_status(s) => Answer::Retry,
        _ => Answer::Final,
    }
}

/// keepclient's retry set of statuses: 408, 429, 5xx except 507.
pub fn is_retry_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status) && status != 507
}

/// Statuses that mean "this server is overloaded: send it less" (keepstore answers 503 once
/// 64 + 128 requests are queued, without a Retry-After).
pub fn is_overload_status(status: u16) -> bool {
    matches!(status, 503 | 429 | 408)
}

/// keepstore's 401 for a signature whose expiry has passed (§2): re-sign and try again.
pub fn is_expired_signature(status: u16, body: &[u8]) -> bool {
    status == 401
        && body
            .windows(b"expired signature".len())
            .any(|w| w == b"expired signature")
}

/// keepstore's answer when the copy it stores is wrong and it noticed before sending a
/// byte (§5.2): 502 with this message. The replica is bad; another holder may be good.
pub const STORED_CHECKSUM_MISMATCH: &str = "checksum mismatch in stored data";

/// Whether an answer is keepstore's "this stored copy is corrupt" (see
/// [`STORED_CHECKSUM_MISMATCH`]).
pub fn is_stored_checksum_mismatch(status: u16, body: &[u8]) -> bool {
    status == 502
        && body
            .windows(STORED_CHECKSUM_MISMATCH.len())
            .any(|w| w == STORED_CHECKSUM_MISMATCH.as_bytes())
}

/// `X-Keep-Replicas-Stored`: the count, or 1 when absent or unparsable (§6.1 step 5).
pub fn replicas_stored(value: Option<&str>) -> u32 {
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(1)
}

/// `X-Keep-Storage-Classes-Confirmed: name=n, name2=m`, parsed as keepclient parses it
/// (`parseStorageClassesConfirmedHeader`: empty entries skipped, exactly one `=` each, a
/// non-empty name, a decimal count). `None` when absent, empty or malformed, or when it names
/// no class: keepclient then stops tracking classes for the rest of the write.
pub fn classes_confirmed(value: Option<&str>) -> Option<Vec<(String, u32)>> {
    let value = value?.trim();
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, count) = item.split_once('=')?;
        if name.is_empty() || count.contains('=') {
            return None;
        }
        let count: u32 = count.parse().ok()?;
        out.push((name.to_string(), count));
    }
    (!out.is_empty()).then_some(out)
}

/// One entry of a pull list (§5.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullItem {
    /// `hash+size`.
    pub locator: String,
    /// `scheme://host:port` of servers holding the block.
    pub servers: Vec<String>,
    #[serde(default)]
    pub mount_uuid: String,
}

/// One entry of a trash list (§5.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashItem {
    /// `hash+size`.
    pub locator: String,
    /// The mtime from the index, nanoseconds: keepstore trashes only a copy with exactly this.
    pub block_mtime: i64,
    #[serde(default)]
    pub mount_uuid: String,
}

/// One entry of `GET /mounts` (sdk/go/arvados/keep_service.go `KeepMount`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub uuid: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub allow_write: bool,
    #[serde(default)]
    pub allow_trash: bool,
    #[serde(default = "one")]
    pub replication: u32,
    #[serde(default)]
    pub storage_classes: std::collections::BTreeMap<String, bool>,
}

fn one() -> u32 {
    1
}

impl MountInfo {
    /// The classes this mount stores (`default` when the server lists none, as keepstore
    /// assumes).
    pub fn classes(&self) -> Vec<&str> {
        let listed: Vec<&str> = self
            .storage_classes
            .iter()
            .filter(|(_, on)| **on)
            .map(|(name, _)| name.as_str())
            .collect();
        if listed.is_empty() {
            vec!["default"]
        } else {
            listed
        }
    }
}

/// Parses a `GET /mounts` body.
pub fn parse_mounts(body: &[u8]) -> Result<Vec<MountInfo>, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keep::BlockHash;

    #[test]
    fn classification_follows_keepclient() {
        assert_eq!(classify(200), Answer::Found);
        for s in [404, 403, 410] {
            assert_eq!(classify(s), Answer::NotFound, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(s), Answer::Retry, "{s}");
        }
        for s in [400, 401, 405, 413, 422, 507] {
            assert_eq!(classify(s), Answer::Final, "{s}");
        }
    }

    #[test]
    fn reply_headers() {
        assert_eq!(replicas_stored(None), 1);
        assert_eq!(replicas_stored(Some(" 3 ")), 3);
        assert_eq!(replicas_stored(Some("x")), 1);
        assert_eq!(classes_confirmed(None), None);
        assert_eq!(classes_confirmed(Some("")), None);
        assert_eq!(
            classes_confirmed(Some("default=1, hot=2,cold=0,")),
            Some(vec![
                ("default".into(), 1),
                ("hot".into(), 2),
                ("cold".into(), 0)
            ])
        );
        assert_eq!(classes_confirmed(Some(" , ")), None);
        assert_eq!(classes_confirmed(Some("a=1=2")), None);
        assert_eq!(classes_confirmed(Some("=1")), None);
        assert_eq!(classes_confirmed(Some("default")), None);
        assert_eq!(classes_confirmed(Some("a=x")), None);
    }

    #[test]
    fn requests_carry_the_go_headers() {
        let put = block_put(
            &BlockHash([0xab; 16]).to_string(),
            &Bearer::new("tok"),
            HeaderValue::short("req-1"),
            2,
            &["a".into(), "b".into()],
        );
        assert_eq!(put.method.as_str(), "PUT");
        assert_eq!(put.path, format!("/{}", "ab".repeat(16)));
        assert!(put
            .headers
            .contains(&(header::AUTHORIZATION, "Bearer tok".into())));
        assert_eq!(format!("{:?}", Bearer::new("tok")), "Bearer <redacted>");
        assert_eq!(Bearer::new("tok").token(), "tok");
        assert_eq!(Bearer::new("").token(), "");
        assert!(put
            .headers
            .contains(&(header::DESIRED_REPLICAS, "2".into())));
        assert!(put
            .headers
            .contains(&(header::STORAGE_CLASSES, "a, b".into())));
        let list = pull(
            &[PullItem {
                locator: "x+1".into(),
                servers: vec!["http://h:1".into()],
                mount_uuid: String::new(),
            }],
            &Bearer::new("t"),
        );
        assert_eq!(
            list.body.as_deref(),
            Some(&br#"[{"locator":"x+1","servers":["http://h:1"],"mount_uuid":""}]"#[..])
        );
        assert_eq!(
            mount_index("zzzzz-nyw5e-000000000000000", "ab", &Bearer::new("t")).path,
            "/mounts/zzzzz-nyw5e-000000000000000/blocks?prefix=ab"
        );
        let id = request_id([35; 20]);
        assert_eq!(id.as_str(), format!("req-{}", "z".repeat(20)));
        assert!(matches!(id, HeaderValue::Short(_)));
    }

    #[test]
    fn expired_signature_is_recognised() {
        assert!(is_expired_signature(401, b"expired signature\n"));
        assert!(!is_expired_signature(401, b"no token provided"));
        assert!(!is_expired_signature(400, b"expired signature"));
    }

    #[test]
    fn mounts_parse_with_defaults() {
        let mounts = parse_mounts(
            br#"[{"uuid":"zzzzz-nyw5e-000000000000000","device_id":"d","allow_write":true,"allow_trash":true,"replication":2,"storage_classes":{"default":true,"cold":false}}, {"uuid":"m2"}]"#,
        )
        .expect("valid mounts");
        assert_eq!(mounts[0].replication, 2);
        assert_eq!(mounts[0].classes(), vec!["default"]);
        assert_eq!(mounts[1].replication, 1);
        assert!(!mounts[1].allow_write);
        assert_eq!(mounts[1].classes(), vec!["default"]);
        assert!(parse_mounts(b"{").is_err());
    }
}
