//! The pull worker's client: one plain-HTTP GET with `Connection: close`, enough to fetch a
//! block from another (simulated) keepstore.

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `/<locator>` from `server` (`http://host:port`); the body of a 200, else `None`.
pub async fn get_block(server: &str, locator: &str, token: &str) -> Option<Bytes> {
    let authority = server.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let request = format!(
        "GET /{locator} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(Bytes::copy_from_slice(&response[head_end + 4..]))
}
