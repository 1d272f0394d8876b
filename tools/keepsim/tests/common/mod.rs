//! Raw-socket HTTP helpers shared by keepsim's integration tests: the tests look at the
//! exact bytes a keepstore sends (heads, chunking, where a body stops), so they do not use
//! an HTTP client library that would hide them.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// A response header's value (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The request bytes (`Connection: close`, `Content-Length` always sent).
pub fn request_bytes(method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Vec<u8> {
    request_bytes_with(method, path, token, &[], body)
}

/// [`request_bytes`] with extra headers.
pub fn request_bytes_with(
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends one request and reads the whole response until the server closes.
pub fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    request_with(port, method, path, token, &[], body)
}

/// [`request`] with extra headers.
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .write_all(&request_bytes_with(method, path, token, headers, body))
        .expect("send request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

/// Splits raw response bytes into status, head and (de-chunked) body.
pub fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().expect("status code");
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).0;
    }
    Reply { status, head, body }
}

/// De-chunks as far as the data goes; also says whether the terminating `0` chunk was seen.
pub fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let Ok(size) =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap_or("x").trim(), 16)
        else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        if data.len() < eol + 2 + size {
            out.extend_from_slice(&data[eol + 2..]);
            return (out, false);
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = data.get(eol + 4 + size..).unwrap_or(&[]);
    }
}

/// How a read loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The server closed (FIN).
    Eof,
    /// The connection was reset.
    Reset,
    /// Nothing arrived for the quiet period: the connection is open and silent.
    Silent,
    /// `limit` bytes were read.
    Limit,
}

/// Reads until EOF, reset, `quiet` without data, or `limit` bytes.
pub fn read_until(stream: &mut TcpStream, quiet: Duration, limit: usize) -> (Vec<u8>, Ending) {
    stream.set_read_timeout(Some(quiet)).expect("timeout");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if raw.len() >= limit {
            return (raw, Ending::Limit);
        }
        match stream.read(&mut buf) {
            Ok(0) => return (raw, Ending::Eof),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (raw, Ending::Reset),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (raw, Ending::Silent)
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Connects and sends a request, leaving the connection open for [`read_until`].
pub fn send(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .write_all(&request_bytes(method, path, token, body))
        .expect("send request");
    stream
}

pub fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls `check` every 10 ms until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}
