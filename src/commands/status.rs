//! `keepmover status [ADDR]` and `keepmover ctl ADDR ACTION`: the clients of a running job's
//! `-listen` endpoint. Without an address, `status` lists the jobs whose run files it finds
//! (see [`super::listen::runtime_dir`]). Plain blocking sockets (TCP or Unix), one HTTP/1.0
//! request each: nothing here is on a hot path.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use super::listen::{parse_bwlimit, running_jobs, RunFile};
use crate::report::status::{render_human, StatusDoc};

/// How long a client waits for a job's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: not an HTTP answer")]
    Garbled { addr: String },
    #[error("{addr}: HTTP {status}: {message}")]
    Status {
        addr: String,
        status: u16,
        message: String,
    },
    #[error("{addr}: the status document does not parse: {source}")]
    Document {
        addr: String,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// One request to a job: `addr` as `-listen` takes it (`127.0.0.1:9100`, `[::1]:9100`,
/// `localhost:9100`, `unix:/path`, optionally with `http://`). Returns the body of a 2xx.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<String, ClientError> {
    let target = addr.strip_prefix("http://").unwrap_or(addr);
    let target = target.trim_end_matches('/');
    let io = |source| ClientError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut text = format!("{method} {path} HTTP/1.0\r\nHost: keepmover\r\n");
    if let Some(token) = token {
        text.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    text.push_str("\r\n");
    text.push_str(body.unwrap_or(""));
    let mut reply = Vec::new();
    match target.strip_prefix("unix:") {
        Some(path) => {
            let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
            stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
            stream.write_all(text.as_bytes()).map_err(io)?;
            stream.read_to_end(&mut reply).map_err(io)?;
        }
        None => {
            use std::net::ToSocketAddrs as _;
            let sockaddr = target
                .to_socket_addrs()
                .map_err(io)?
                .next()
                .ok_or_else(|| io(std::io::Error::other("resolves to no address")))?;
            let mut stream =
                std::net::TcpStream::connect_timeout(&sockaddr, TIMEOUT).map_err(io)?;
            stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
            stream.write_all(text.as_bytes()).map_err(io)?;
            stream.read_to_end(&mut reply).map_err(io)?;
        }
    }
    parse_reply(addr, &reply)
}

/// Reads a job's whole HTTP/1.0 answer (`reply`, as received until the job closed the
/// connection; `addr` only names it in errors): the body of a 2xx, else the status with the
/// job's `{"error": ...}` message (or the body's text). No I/O, so it is fuzzed on its own.
pub fn parse_reply(addr: &str, reply: &[u8]) -> Result<String, ClientError> {
    let reply = String::from_utf8_lossy(reply);
    let garbled = || ClientError::Garbled {
        addr: addr.to_string(),
    };
    let (head, body) = reply.split_once("\r\n\r\n").ok_or_else(garbled)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(garbled)?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        return Err(ClientError::Status {
            addr: addr.to_string(),
            status,
            message,
        });
    }
    Ok(body.to_string())
}

/// A job's status document.
pub fn fetch_status(addr: &str, token: Option<&str>) -> Result<StatusDoc, ClientError> {
    let body = request(addr, "GET", "/status", None, token)?;
    parse_status(addr, &body)
}

/// Parses a `/status` body (`addr` only names it in errors).
pub fn parse_status(addr: &str, body: &str) -> Result<StatusDoc, ClientError> {
    serde_json::from_str(body).map_err(|source| ClientError::Document {
        addr: addr.to_string(),
        source,
    })
}

/// `keepmover status ADDR`: the human summary (or `-json`, the document as served).
pub fn status(addr: &str, json: bool, token: Option<&str>) -> Result<String, ClientError> {
    if json {
        return request(addr, "GET", "/status", None, token);
    }
    Ok(render_human(&fetch_status(addr, token)?))
}

/// `keepmover status`: the running jobs found in the runtime directory, each with its
/// summary when it answers.
pub fn list(json: bool, token: Option<&str>) -> String {
    let jobs = running_jobs();
    if json {
        let docs: Vec<serde_json::Value> = jobs
            .iter()
            .map(|job| {
                let status = fetch_status(&job.address, token)
                    .ok()
                    .and_then(|d| serde_json::to_value(d).ok());
                serde_json::json!({ "job": job, "status": status })
            })
            .collect();
        return serde_json::to_string_pretty(&docs).unwrap_or_default() + "\n";
    }
    if jobs.is_empty() {
        return format!(
            "no running keepmover job with -listen found in {}\n",
            super::listen::runtime_dir().display()
        );
    }
    let mut out = String::new();
    for RunFile {
        pid,
        address,
        command,
        token_required,
        ..
    } in &jobs
    {
        out.push_str(&format!("{address}  pid {pid}  {command}\n"));
        match fetch_status(address, token) {
            Ok(doc) => {
                for line in render_human(&doc).lines().skip(1) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Err(e) if *token_required && token.is_none() => {
                out.push_str(&format!("  (needs -listen-token-file: {e})\n"))
            }
            Err(e) => out.push_str(&format!("  (no answer: {e})\n")),
        }
    }
    out
}

/// The body of a `ctl` action: `pause`, `resume`, `cancel`, `concurrency N`, `bwlimit RATE`.
pub fn control_body(action: &str, value: Option<&str>) -> Result<String, ClientError> {
    let usage = || {
        ClientError::Usage(
            "expected pause, resume, cancel, concurrency N or bwlimit RATE (e.g. 10MiB, UP:DOWN, 0 = off)"
                .into(),
        )
    };
    let body = match (action, value) {
        ("pause" | "resume" | "cancel", None) => serde_json::json!({ "action": action }),
        ("concurrency", Some(n)) => {
            let n: u64 = n.parse().map_err(|_| {
                ClientError::Usage(format!("concurrency {n:?}: expected a whole number"))
            })?;
            serde_json::json!({ "action": "concurrency", "value": n })
        }
        ("bwlimit", Some(rate)) => {
            parse_bwlimit(rate).map_err(ClientError::Usage)?;
            serde_json::json!({ "action": "bwlimit", "value": rate })
        }
        _ => return Err(usage()),
    };
    Ok(body.to_string())
}

/// `keepmover ctl ADDR ACTION [VALUE]`: one control request; returns the job's answer.
pub fn ctl(
    addr: &str,
    action: &str,
    value: Option<&str>,
    token: Option<&str>,
) -> Result<String, ClientError> {
    let body = control_body(action, value)?;
    let reply = request(addr, "POST", "/control", Some(&body), token)?;
    Ok(control_done(reply))
}

/// What a job says it did, from the body of its 2xx `/control` answer: the `done` text of
/// `{"done": ...}`, else the body as it is.
pub fn control_done(reply: String) -> String {
    serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .and_then(|v| v.get("done").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bodies() {
        assert_eq!(
            control_body("pause", None).expect("ok"),
            r#"{"action":"pause"}"#
        );
        assert_eq!(
            control_body("concurrency", Some("4")).expect("ok"),
            r#"{"action":"concurrency","value":4}"#
        );
        assert_eq!(
            control_body("bwlimit", Some("1MiB:2MiB")).expect("ok"),
            r#"{"action":"bwlimit","value":"1MiB:2MiB"}"#
        );
        assert!(control_body("concurrency", Some("many")).is_err());
        assert!(control_body("bwlimit", Some("fast")).is_err());
        assert!(control_body("pause", Some("now")).is_err());
        assert!(control_body("explode", None).is_err());
    }
}
