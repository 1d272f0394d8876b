//! The pure part of HTTP/1.1: writing a request head, parsing a response head with httparse
//! over a caller-owned buffer (`Partial` until the blank line arrives), and decoding chunked
//! bodies incrementally. No I/O here, so every byte split can be tested.

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes of the buffer the head used.
    pub length: usize,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The result of looking for a head in the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse {
    Partial,
    Complete(ResponseHead),
}

const MAX_HEADERS: usize = 64;

/// Parses a response head from the start of `buf`.
pub fn parse_response_head(buf: &[u8]) -> Result<HeadParse, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(HeadParse::Partial),
        Ok(httparse::Status::Complete(length)) => {
            let status = response.code.ok_or("no status code")?;
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect();
            Ok(HeadParse::Complete(ResponseHead {
                status,
                headers,
                length,
            }))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// How the body of a response is delimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Until the server closes the connection (not reusable).
    UntilClose,
}

/// Decides the body framing per RFC 9112 §6.3 for a response to `method`.
pub fn body_kind(head: &ResponseHead, is_head_request: bool) -> Result<BodyKind, String> {
    if is_head_request
        || head.status == 204
        || head.status == 304
        || (100..200).contains(&head.status)
    {
        return Ok(BodyKind::None);
    }
    if let Some(te) = head.header("Transfer-Encoding") {
        if te
            .split(',')
            .map(str::trim)
            .any(|t| t.eq_ignore_ascii_case("chunked"))
        {
            return Ok(BodyKind::Chunked);
        }
        return Ok(BodyKind::UntilClose);
    }
    match head.header("Content-Length") {
        Some(text) => text
            .parse::<u64>()
            .map(BodyKind::Length)
            .map_err(|_| format!("bad Content-Length {text:?}")),
        None => Ok(BodyKind::UntilClose),
    }
}

/// Whether the connection may be reused after this response.
pub fn keeps_alive(head: &ResponseHead) -> bool {
    !head
        .header("Connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// Writes `METHOD path HTTP/1.1` and the headers (plus Host, Content-Length) into `out`.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    body_len: Option<usize>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = body_len {
        out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Incremental chunked-body decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// Reading the size line.
    Size,
    /// Data bytes left in the current chunk.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last (zero) chunk: trailers until a blank line.
    Trailers,
    Done,
}

/// What one decoding step did.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkStep {
    /// Need more input.
    NeedMore,
    /// `consumed` input bytes processed; data bytes are `input[start..start+len]`.
    Data {
        consumed: usize,
        start: usize,
        len: usize,
    },
    /// Framing consumed, no data produced.
    Advanced {
        consumed: usize,
    },
    Done {
        consumed: usize,
    },
}

const MAX_CHUNK_LINE: usize = 4096;

impl ChunkState {
    /// Decodes from `input` (the unconsumed bytes). `max_data` limits the data returned.
    pub fn step(&mut self, input: &[u8], max_data: usize) -> Result<ChunkStep, String> {
        match self {
            ChunkState::Done => Ok(ChunkStep::Done { consumed: 0 }),
            ChunkState::Data(left) => {
                if input.is_empty() {
                    return Ok(ChunkStep::NeedMore);
                }
                let len = (*left).min(input.len() as u64).min(max_data as u64) as usize;
                *left -= len as u64;
                if *left == 0 {
                    *self = ChunkState::DataEnd;
                }
                Ok(ChunkStep::Data {
                    consumed: len,
                    start: 0,
                    len,
                })
            }
            ChunkState::DataEnd => {
                if input.len() < 2 {
                    return Ok(ChunkStep::NeedMore);
                }
                if &input[..2] != b"\r\n" {
                    return Err("missing CRLF after chunk data".into());
                }
                *self = ChunkState::Size;
                Ok(ChunkStep::Advanced { consumed: 2 })
            }
            ChunkState::Size => {
                let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
                    if input.len() > MAX_CHUNK_LINE {
                        return Err("chunk size line too long".into());
                    }
                    return Ok(ChunkStep::NeedMore);
                };
                let line = &input[..end];
                let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size_text = std::str::from_utf8(size_text)
                    .map_err(|_| "chunk size is not ASCII")?
                    .trim();
                if size_text.is_empty()
                    || size_text.len() > 15
                    || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(format!("bad chunk size {size_text:?}"));
                }
                let size = u64::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
                *self = if size == 0 {
                    ChunkState::Trailers
                } else {
                    ChunkState::Data(size)
                };
                Ok(ChunkStep::Advanced { consumed: end + 2 })
            }
            ChunkState::Trailers => {
                let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
                    if input.len() > MAX_CHUNK_LINE {
                        return Err("trailer line too long".into());
                    }
                    return Ok(ChunkStep::NeedMore);
                };
                if end == 0 {
                    *self = ChunkState::Done;
                    return Ok(ChunkStep::Done { consumed: 2 });
                }
                Ok(ChunkStep::Advanced { consumed: end + 2 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], split: usize) -> Result<Vec<u8>, String> {
        let mut state = ChunkState::Size;
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut feeds = vec![
            &input[..split.min(input.len())],
            &input[split.min(input.len())..],
        ]
        .into_iter();
        loop {
            match state.step(&pending, usize::MAX)? {
                ChunkStep::NeedMore => match feeds.next() {
                    Some(more) => pending.extend_from_slice(more),
                    None => return Err("truncated".into()),
                },
                ChunkStep::Data {
                    consumed,
                    start,
                    len,
                } => {
                    out.extend_from_slice(&pending[start..start + len]);
                    pending.drain(..consumed);
                }
                ChunkStep::Advanced { consumed } => {
                    pending.drain(..consumed);
                }
                ChunkStep::Done { .. } => return Ok(out),
            }
        }
    }

    #[test]
    fn chunked_at_every_split() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 0..=body.len() {
            assert_eq!(
                decode_all(body, split).expect("test input"),
                b"Wikipedia in\r\n\r\nchunks.",
                "split {split}"
            );
        }
    }

    #[test]
    fn bad_chunks() {
        assert!(decode_all(b"zz\r\n", 0).is_err());
        assert!(decode_all(b"4\r\nWikiXX0\r\n\r\n", 0).is_err());
        assert!(decode_all(b"fffffffffffffffff\r\n", 0).is_err());
        assert!(decode_all(b"4\r\nWi", 0).is_err());
    }

    #[test]
    fn head_partial_then_complete() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Keep-Replicas-Stored: 2\r\n\r\nabc";
        for cut in 0..head.len() - 3 {
            assert_eq!(
                parse_response_head(&head[..cut]).expect("test input"),
                HeadParse::Partial,
                "{cut}"
            );
        }
        let HeadParse::Complete(parsed) = parse_response_head(head).expect("test input") else {
            panic!()
        };
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.length, head.len() - 3);
        assert_eq!(parsed.header("x-keep-replicas-stored"), Some("2"));
        assert_eq!(body_kind(&parsed, false), Ok(BodyKind::Length(3)));
        assert_eq!(body_kind(&parsed, true), Ok(BodyKind::None));
        assert!(parse_response_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
