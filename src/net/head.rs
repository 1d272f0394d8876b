//! Pure HTTP/1.1 framing: writing a request head, parsing a response head (httparse) and
//! deciding how the response body is delimited. No I/O here, so it is benchmarked
//! (`benches/http_parse.rs`) and tested on its own.

/// Request method. Custom methods are sent verbatim (they must be a token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Put,
    Delete,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(m) => m,
        }
    }

    /// Safe to send again after a connection failed before any response byte.
    pub fn is_idempotent(&self) -> bool {
        match self {
            Method::Get | Method::Head | Method::Put | Method::Delete => true,
            Method::Other(m) => matches!(m.as_str(), "OPTIONS" | "TRACE"),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 9110's `tchar`, as a table: a request's header names are checked on every request.
const TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        byte += 1;
    }
    table
};

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TOKEN_BYTE[b as usize])
}

/// Whether any byte matches, looking at all of them (no early exit, so it vectorises: the
/// values checked are short and almost never match).
fn any_byte(bytes: &[u8], matches: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(false, |found, &b| found | matches(b))
}

/// Appends a request head to `out`. `content_length` is sent when there is a body (or for
/// PUT, where an empty body must still be announced). Rejects anything that could split the
/// head (CR, LF or NUL in the target or a header, a method or header name that is not a
/// token) and caller-supplied framing headers, which this layer owns.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    host_header: &str,
    path_and_query: &str,
    headers: &[(impl AsRef<str>, impl AsRef<str>)],
    content_length: Option<u64>,
) -> Result<(), String> {
    if !is_token(method.as_str()) {
        return Err(format!("method {:?} is not a token", method.as_str()));
    }
    if !path_and_query.starts_with('/') && path_and_query != "*" {
        return Err(format!("target {path_and_query:?} must start with '/'"));
    }
    if any_byte(path_and_query.as_bytes(), |b| (b <= b' ') | (b == 0x7f)) {
        return Err(format!(
            "target {path_and_query:?} contains spaces or control bytes"
        ));
    }
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host_header.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if !is_token(name) {
            return Err(format!("header name {name:?} is not a token"));
        }
        // memchr's vector search: a value-by-value byte loop was 2% of a 4 KiB block's CPU.
        if memchr::memchr3(b'\r', b'\n', 0, value.as_bytes()).is_some() {
            return Err(format!("header {name} has CR, LF or NUL in its value"));
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("host")
        {
            return Err(format!("header {name} is set by the client itself"));
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilEof,
}

/// The header fields of a response, in order. Names and values are ranges into one string:
/// the head's own text when it is UTF-8 throughout (all heads in practice: one check and one
/// copy per response, where a check and a copy per field were 2% of a 4 KiB block's CPU), or
/// else the fields copied one by one with what is not UTF-8 made U+FFFD.
#[derive(Clone, Default)]
pub struct HeaderFields {
    text: String,
    fields: Vec<FieldRange>,
}

/// Where one field's name and value are in [`HeaderFields::text`].
#[derive(Clone, Copy)]
struct FieldRange {
    name: (u32, u32),
    value: (u32, u32),
}

/// Heads are capped far below 4 GiB (`max_head_bytes`), so offsets into them fit in u32.
fn offset(at: usize) -> Option<u32> {
    u32::try_from(at).ok()
}

impl HeaderFields {
    /// The fields httparse found in `head` (they are slices of it).
    fn from_head(head: &[u8], parsed: &[httparse::Header<'_>]) -> HeaderFields {
        if let Ok(text) = std::str::from_utf8(head) {
            // Each slice's place in `head`; every boundary is at an ASCII byte (a name ends
            // at its colon, a value at CR, LF, or the spaces and tabs before them), so at a
            // char boundary of `text`.
            let range_in_head = |part: &[u8]| {
                let start = (part.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
                let end = start
                    .checked_add(part.len())
                    .filter(|&end| end <= head.len())?;
                Some((offset(start)?, offset(end)?))
            };
            // Sized up front: collecting into `Option<Vec<_>>` cannot see the length and
            // grew the vector twice per response.
            let mut fields = Vec::with_capacity(parsed.len());
            for field in parsed {
                let (Some(name), Some(value)) = (
                    range_in_head(field.name.as_bytes()),
                    range_in_head(field.value),
                ) else {
                    break;
                };
                fields.push(FieldRange { name, value });
            }
            if fields.len() == parsed.len() {
                return HeaderFields {
                    text: text.to_string(),
                    fields,
                };
            }
        }
        let mut headers = HeaderFields {
            text: String::with_capacity(head.len()),
            fields: Vec::with_capacity(parsed.len()),
        };
        for field in parsed {
            headers.push(field.name, field.value);
        }
        headers
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        let at = |len: usize| offset(len).unwrap_or(u32::MAX);
        let name_start = at(self.text.len());
        self.text.push_str(name);
        let value_start = at(self.text.len());
        match std::str::from_utf8(value) {
            Ok(text) => self.text.push_str(text),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(value)),
        }
        self.fields.push(FieldRange {
            name: (name_start, value_start),
            value: (value_start, at(self.text.len())),
        });
    }

    /// Every `(name, value)`, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|field| {
            let text =
                |(from, to): (u32, u32)| self.text.get(from as usize..to as usize).unwrap_or("");
            (text(field.name), text(field.value))
        })
    }

    /// Values of every field named `name` (case-insensitive).
    pub fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// First value of a field, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Equal when the fields are, however they are stored.
impl PartialEq for HeaderFields {
    fn eq(&self, other: &HeaderFields) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeaderFields {}

impl std::fmt::Debug for HeaderFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    /// HTTP/1.x minor version.
    pub minor_version: u8,
    pub headers: HeaderFields,
    /// Bytes the head took, including the blank line.
    pub head_len: usize,
}

/// Result of trying to parse a head from the bytes received so far.
#[derive(Debug)]
pub enum ParseOutcome {
    Complete(ResponseHead),
    /// Need more bytes.
    Partial,
}

const MAX_HEADERS: usize = 128;

/// The error text of a head with more than 128 header fields (treated as too large).
pub const TOO_MANY_HEADERS: &str = "too many header fields";

/// Parses a response head at the start of `buf`.
pub fn parse_response_head(buf: &[u8]) -> Result<ParseOutcome, String> {
    // Left uninitialised: filling 128 empty headers (4 KiB) cost as much as the parse.
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut storage,
    );
    match parsed {
        Ok(httparse::Status::Partial) => Ok(ParseOutcome::Partial),
        Ok(httparse::Status::Complete(head_len)) => {
            let status = response.code.ok_or("no status code")?;
            let minor_version = response.version.ok_or("no HTTP version")?;
            let headers = HeaderFields::from_head(&buf[..head_len], response.headers);
            Ok(ParseOutcome::Complete(ResponseHead {
                status,
                minor_version,
                headers,
                head_len,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(TOO_MANY_HEADERS.to_string()),
        Err(e) => Err(format!("unparsable response head: {e}")),
    }
}

impl ResponseHead {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Decides the body framing (RFC 9112 §6.3) for a response to `method`.
    pub fn framing(&self, method: &Method) -> Result<BodyFraming, String> {
        if *method == Method::Head
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Ok(BodyFraming::Empty);
        }
        let mut transfer_encodings = self
            .headers
            .all("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .peekable();
        if transfer_encodings.peek().is_some() {
            let last = transfer_encodings.last().unwrap_or_default();
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilEof
            });
        }
        let mut length: Option<u64> = None;
        for value in self.headers.all("content-length") {
            for part in value.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("bad Content-Length {value:?}"));
                }
                let n: u64 = part
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length headers".to_string());
                }
                length = Some(n);
            }
        }
        Ok(match length {
            Some(0) => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilEof,
        })
    }

    /// Whether the connection may carry another request after this response.
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for value in self.headers.all("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        if close {
            false
        } else {
            self.minor_version >= 1 || keep_alive
        }
    }
}

/// One step of reading a final response head from the bytes received so far (pure: the
/// loop in `client.rs` and the `head_loop` fuzz target drive it).
#[derive(Debug)]
pub enum HeadStep {
    /// A final (non-1xx) head; `head.head_len` bytes are its.
    Final(ResponseHead),
    /// An interim 1xx head of this many bytes: drop them and look again.
    Interim(usize),
    /// Need more bytes.
    Partial,
}

/// Why a response head is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("response head larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Bad(String),
}

/// Looks at the start of `buffered` for a response head within `max_head_bytes`.
/// Interim heads count against the limit one by one (each is dropped once seen); a caller
/// should also bound how many it skips in total (see `MAX_INTERIM_BYTES`).
pub fn head_step(buffered: &[u8], max_head_bytes: usize) -> Result<HeadStep, HeadError> {
    let too_large = HeadError::TooLarge {
        limit: max_head_bytes,
    };
    match parse_response_head(buffered) {
        Ok(ParseOutcome::Complete(head)) => {
            if head.head_len > max_head_bytes {
                return Err(too_large);
            }
            match head.status {
                // httparse takes any three digits; RFC 9110 §15 defines 100–599 only (a
                // `000` or `099` status must not reach callers as an answer).
                status @ (0..=99 | 600..) => Err(HeadError::Bad(format!(
                    "status code {status:03} out of range"
                ))),
                101 => Err(HeadError::Bad("unexpected 101 Switching Protocols".into())),
                100..=199 => Ok(HeadStep::Interim(head.head_len)),
                _ => Ok(HeadStep::Final(head)),
            }
        }
        Ok(ParseOutcome::Partial) if buffered.len() >= max_head_bytes => Err(too_large),
        Ok(ParseOutcome::Partial) => Ok(HeadStep::Partial),
        Err(detail) if detail == TOO_MANY_HEADERS => Err(too_large),
        Err(detail) => Err(HeadError::Bad(detail)),
    }
}

/// Interim (1xx) heads skipped before one final head may add up to at most this many times
/// `max_head_bytes` (a server sending `100 Continue` forever is refused, not followed).
pub const MAX_INTERIM_FACTOR: usize = 4;

/// Parses a chunk-size line without its CRLF: hex digits, then optional `;extensions`.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "chunk size line {:?} has no hex digits",
            String::from_utf8_lossy(line)
        ));
    }
    let rest_ok = rest.is_empty() || {
        let trimmed = rest
            .iter()
            .position(|b| *b != b' ' && *b != b'\t')
            .map_or(&[][..], |i| &rest[i..]);
        trimmed.is_empty() || trimmed[0] == b';'
    };
    if !rest_ok {
        return Err(format!(
            "bad chunk size line {:?}",
            String::from_utf8_lossy(line)
        ));
    }
    if digits.len() > 15 {
        return Err("chunk size too large".to_string());
    }
    let mut size = 0u64;
    for &d in digits {
        let v = (d as char).to_digit(16).unwrap_or(0) as u64;
        size = size * 16 + v;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> ResponseHead {
        match parse_response_head(raw.as_bytes()).expect("test input") {
            ParseOutcome::Complete(h) => h,
            ParseOutcome::Partial => panic!("partial"),
        }
    }

    #[test]
    fn header_fields_from_utf8_heads_and_from_heads_that_are_not() {
        let utf8 = head("HTTP/1.1 200 OK\r\nX-A:  caf\u{e9} \r\nx-b:\r\nX-C: 1, 2\r\n\r\n");
        let fields: Vec<_> = utf8.headers.iter().collect();
        assert_eq!(fields, [("X-A", "caf\u{e9}"), ("x-b", ""), ("X-C", "1, 2")]);
        assert_eq!(utf8.header("x-a"), Some("caf\u{e9}"));
        assert_eq!(utf8.header("X-B"), Some(""));

        let raw = b"HTTP/1.1 200 OK\r\nX-A: ok\r\nX-B: \xffx\xfe\r\n\r\n";
        let ParseOutcome::Complete(latin) = parse_response_head(raw).expect("test input") else {
            panic!("partial");
        };
        let fields: Vec<_> = latin.headers.iter().collect();
        assert_eq!(fields, [("X-A", "ok"), ("X-B", "\u{fffd}x\u{fffd}")]);
        // Equal by content, whichever way they were stored.
        let mut copied = HeaderFields::default();
        copied.push("X-A", "caf\u{e9}".as_bytes());
        copied.push("x-b", b"");
        copied.push("X-C", b"1, 2");
        assert_eq!(copied, utf8.headers);
    }

    proptest::proptest! {
        /// Whatever the head holds (UTF-8 or not), the fields read back are httparse's, with
        /// what is not UTF-8 made U+FFFD: the ranges into the head's text and the copied
        /// fallback agree with the parser itself.
        #[test]
        fn header_fields_are_what_httparse_parsed(
            fields in proptest::collection::vec(
                ("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", proptest::collection::vec(
                    proptest::prop_oneof![
                        8 => 0x20u8..0x7f,
                        1 => proptest::strategy::Just(b'\t'),
                        2 => 0x80u8..=0xff,
                    ],
                    0..24,
                )),
                0..10,
            ),
        ) {
            let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
            for (name, value) in &fields {
                raw.extend_from_slice(name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(value);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            let mut storage = [httparse::EMPTY_HEADER; 16];
            let mut oracle = httparse::Response::new(&mut storage);
            let expected: Option<Vec<(String, String)>> = match oracle.parse(&raw) {
                Ok(httparse::Status::Complete(_)) => Some(
                    oracle
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                ),
                _ => None,
            };
            match (parse_response_head(&raw), expected) {
                (Ok(ParseOutcome::Complete(head)), Some(expected)) => {
                    let got: Vec<(String, String)> = head
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    proptest::prop_assert_eq!(got, expected);
                }
                (Err(_), None) => {}
                (got, expected) => proptest::prop_assert!(false, "{:?} against httparse's {:?}", got, expected),
            }
        }
    }

    #[test]
    fn request_head() {
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &Method::Put,
            "h:1",
            "/abc?x=1",
            &[("Authorization", "Bearer t")],
            Some(3),
        )
        .expect("test input");
        assert_eq!(
            out,
            b"PUT /abc?x=1 HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer t\r\nContent-Length: 3\r\n\r\n"
        );
        let bad = |path: &str, headers: &[(String, String)]| {
            write_request_head(&mut Vec::new(), &Method::Get, "h", path, headers, None).is_err()
        };
        assert!(bad("/a b", &[]));
        assert!(bad("nopath", &[]));
        assert!(bad("/", &[("X".into(), "a\r\nInjected: 1".into())]));
        assert!(bad("/", &[("Bad Name".into(), "v".into())]));
        assert!(bad("/", &[("content-length".into(), "1".into())]));
    }

    #[test]
    fn framing_rules() {
        let get = Method::Get;
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").framing(&get),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").framing(&Method::Head),
            Ok(BodyFraming::Empty)
        );
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\n\r\n").framing(&get),
            Ok(BodyFraming::Empty)
        );
        assert_eq!(
            head(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"
            )
            .framing(&get),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\n\r\n").framing(&get),
            Ok(BodyFraming::UntilEof)
        );
        assert!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
                .framing(&get)
                .is_err()
        );
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
            .framing(&get)
            .is_err());
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n").framing(&get),
            Ok(BodyFraming::Length(7))
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(head("HTTP/1.1 200 OK\r\n\r\n").keep_alive());
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keep_alive());
        assert!(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }

    /// Found by the `head_loop` fuzz target: httparse accepts `HTTP/1.0 000`, which was
    /// handed on as a final response with status 0.
    #[test]
    fn status_codes_outside_100_599_are_refused() {
        for raw in [
            "HTTP/1.0 000\n\n",
            "HTTP/1.1 099 X\r\n\r\n",
            "HTTP/1.1 600 X\r\n\r\n",
        ] {
            assert!(
                matches!(head_step(raw.as_bytes(), 4096), Err(HeadError::Bad(_))),
                "{raw:?}"
            );
        }
        assert!(matches!(
            head_step(b"HTTP/1.1 599 X\r\n\r\n", 4096),
            Ok(HeadStep::Final(_))
        ));
        assert!(matches!(
            head_step(b"HTTP/1.1 100 Continue\r\n\r\n", 4096),
            Ok(HeadStep::Interim(25))
        ));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size(b"0;name=value"), Ok(0));
        assert_eq!(parse_chunk_size(b"10 ;x"), Ok(16));
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"zz").is_err());
        assert!(parse_chunk_size(b"12x").is_err());
        assert!(parse_chunk_size(b"ffffffffffffffffff").is_err());
    }
}
