//! `keepmover touch`'s flags: the destination's settings and services flags, what to touch
//! (`-locators FILE|-`, `-prefix P`, `-all`), concurrency, retries and timeouts.

use super::rsync_flags::http_config;
use super::{fatal, parse_go_command, usage_error};
use crate::commands::touch::{self, LocatorInput, Selection, TouchArgs};
use crate::gocompat::flag::{flag, invalid, FlagKind, FlagSpec, ParsedFlags};
use crate::mover::RetryPolicy;
use crate::net::IoBackend;

pub const TOUCH_FLAGS: &[FlagSpec] = &[
    flag("dst", FlagKind::String, "", "Destination configuration filename or NAME ($HOME/.config/arvados/NAME.conf); its token must be the SystemRootToken"),
    flag("dst-keep-services-json", FlagKind::String, "", "Destination keep services: the JSON text itself, or a file holding it (skips discovery)"),
    flag("locators", FlagKind::String, "", "File with one hash or hash+size per line (- = standard input); with -prefix, only those under it"),
    flag("prefix", FlagKind::String, "", "Touch every block whose hash starts with this"),
    flag("all", FlagKind::Bool, "false", "Touch every block of the destination"),
    flag("concurrency", FlagKind::Int, "32", "TOUCH requests in flight at once"),
    flag("retries", FlagKind::Int, "2", "Retries per request after the first attempt"),
    flag("retry-delay", FlagKind::Duration, "2s", "First retry delay; doubles each time, capped at 10x"),
    flag("prefix-length", FlagKind::Int, "0", "Hex digits per index slice (0 = chosen from the block count)"),
    flag("io", FlagKind::String, "auto", "I/O backend: auto, uring, epoll"),
    flag("connect-timeout", FlagKind::Duration, "10s", "TCP connect + TLS handshake timeout"),
    flag("first-byte-timeout", FlagKind::Duration, "1m0s", "Time from a request being sent to its response head arriving"),
    flag("idle-timeout", FlagKind::Duration, "1m0s", "Longest time a request may go without moving a byte"),
    super::rsync_flags::MIN_RATE,
    flag("report", FlagKind::String, "", "Write one JSON line per touched copy, failure or block not found to this file"),
    flag("json", FlagKind::String, "", "Write the totals as JSON to this file"),
    flag("version", FlagKind::Bool, "false", "Print version information and exit."),
];

pub fn touch_args(parsed: &ParsedFlags) -> Result<TouchArgs, String> {
    let prefix = parsed.text("prefix").to_string();
    if prefix.len() > 32
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            "prefix",
            &prefix,
            "expected up to 32 lowercase hex digits",
        ));
    }
    let selection = match (parsed.non_empty("locators"), parsed.is_true("all")) {
        (Some(_), true) => return Err("-locators and -all exclude each other".to_string()),
        (Some("-"), false) => Selection::Locators {
            input: LocatorInput::Stdin,
            prefix,
        },
        (Some(path), false) => Selection::Locators {
            input: LocatorInput::File(path.into()),
            prefix,
        },
        (None, true) if !prefix.is_empty() => {
            return Err("-prefix and -all exclude each other".to_string())
        }
        (None, true) => Selection::Prefix(String::new()),
        (None, false) if !prefix.is_empty() => Selection::Prefix(prefix),
        (None, false) => {
            return Err(
                "say what to touch: -locators FILE (- for standard input), -prefix P, or -all"
                    .to_string(),
            )
        }
    };
    let io_text = parsed.text("io");
    let io: IoBackend = io_text
        .parse()
        .map_err(|_| invalid("io", io_text, "expected auto, uring or epoll"))?;
    Ok(TouchArgs {
        dst: parsed.text("dst").to_string(),
        dst_keep_services_json: parsed
            .non_empty("dst-keep-services-json")
            .map(str::to_string),
        selection,
        io,
        http: http_config(parsed)?,
        concurrency: parsed.int_in("concurrency", 1..=65_536)?,
        retry: RetryPolicy {
            retries: parsed.int_in("retries", 0..=100)?,
            delay: parsed.duration("retry-delay", false)?,
        },
        prefix_length: parsed.int_in("prefix-length", 0..=8)?,
        report: parsed.non_empty("report").map(Into::into),
        json: parsed.non_empty("json").map(Into::into),
    })
}

pub fn run_touch(program: &str, args: &[String]) -> i32 {
    let title = format!("{program} touch");
    let parsed = match parse_go_command(program, &title, TOUCH_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = match touch_args(&parsed) {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match touch::run(typed) {
        Ok(outcome) => outcome.code(),
        Err(e) => fatal(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gocompat::flag::parse;

    fn args(list: &[&str]) -> Result<TouchArgs, String> {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        touch_args(&parse(TOUCH_FLAGS, &owned).expect("parses"))
    }

    #[test]
    fn what_to_touch_is_said_once() {
        assert!(args(&["-dst", "x"]).is_err());
        assert!(args(&["-all", "-prefix", "ab"]).is_err());
        assert!(args(&["-all", "-locators", "f"]).is_err());
        assert_eq!(
            args(&["-locators", "-"]).expect("stdin").selection,
            Selection::Locators {
                input: LocatorInput::Stdin,
                prefix: String::new()
            }
        );
        assert_eq!(
            args(&["-prefix", "ab"]).expect("prefix").selection,
            Selection::Prefix("ab".into())
        );
        assert!(args(&["-prefix", "AB"]).is_err());
        // The retry default is the copy's.
        assert_eq!(args(&["-all"]).expect("all").retry, touch::default_retry());
    }
}
