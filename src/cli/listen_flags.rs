//! The `-listen` flags, shared by every command that runs the engine: the flag specs (a
//! command's table lists [`LISTEN`], [`LISTEN_TOKEN_FILE`] and [`LISTEN_LINGER`]) and one function turning them into
//! [`ListenOptions`], with the rule that anything but loopback or a Unix socket needs a
//! token file.

use crate::commands::listen::{read_token_file, ListenAddr, ListenOptions};
use crate::gocompat::flag::{flag, invalid, FlagKind, FlagSpec, ParsedFlags};

/// `-listen`.
pub const LISTEN: FlagSpec = flag("listen", FlagKind::String, "", "keepmover: serve GET /metrics (Prometheus), GET /status (JSON) and POST /control (pause, resume, cancel, concurrency, bwlimit) on this address: 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:/path (anything else needs -listen-token-file); see keepmover status and keepmover ctl");
/// `-listen-token-file`.
pub const LISTEN_TOKEN_FILE: FlagSpec = flag("listen-token-file", FlagKind::String, "", "keepmover: file holding a token that every -listen request must present as Authorization: Bearer TOKEN (required for a non-loopback -listen)");
/// `-listen-linger`.
pub const LISTEN_LINGER: FlagSpec = flag("listen-linger", FlagKind::Duration, "0s", "keepmover: keep serving -listen this long after the job ends, so a scraper sees the final counters (a cancel request ends the wait)");

/// The `-listen` flags, checked; `None` without `-listen`.
pub fn listen_options(parsed: &ParsedFlags) -> Result<Option<ListenOptions>, String> {
    let token = match parsed.non_empty("listen-token-file") {
        Some(path) => Some(
            read_token_file(std::path::Path::new(path))
                .map_err(|e| invalid("listen-token-file", path, &e))?,
        ),
        None => None,
    };
    let linger = parsed.duration("listen-linger", false)?;
    let Some(text) = parsed.non_empty("listen") else {
        return Ok(None);
    };
    let addr = ListenAddr::parse(text).map_err(|e| invalid("listen", text, &e))?;
    if !addr.is_local() && token.is_none() {
        return Err(invalid(
            "listen",
            text,
            "not a loopback address or unix:/path; anyone who can reach it could pause or cancel the job, so it needs -listen-token-file",
        ));
    }
    Ok(Some(ListenOptions {
        addr,
        token,
        linger,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gocompat::flag::parse;

    fn options(args: &[&str]) -> Result<Option<ListenOptions>, String> {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        listen_options(&parse(&[LISTEN, LISTEN_TOKEN_FILE, LISTEN_LINGER], &owned).expect("parses"))
    }

    #[test]
    fn non_loopback_needs_a_token_file() {
        assert!(options(&[]).expect("ok").is_none());
        assert!(options(&["-listen", "127.0.0.1:0"]).expect("ok").is_some());
        let err = options(&["-listen", "0.0.0.0:9100"]).expect_err("refused");
        assert!(err.contains("-listen-token-file"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "t0ken\n").expect("write");
        let path = file.to_str().expect("utf-8");
        let opts = options(&["-listen", "0.0.0.0:0", "-listen-token-file", path])
            .expect("ok")
            .expect("some");
        assert_eq!(opts.token.as_deref(), Some("t0ken"));
        std::fs::write(&file, "\n").expect("write");
        let err =
            options(&["-listen", "0.0.0.0:0", "-listen-token-file", path]).expect_err("empty");
        assert!(err.contains("empty"), "{err}");
        assert!(!err.contains("t0ken"));
    }
}
