//! `keepmover touch`'s flags: the destination's settings and services flags, what to touch
//! (`-locators FILE|-`, `-prefix P`, `-all`, narrowed by the copy's `-shard`, `-size` and
//! `-mtime`, parsed by the copy's own [`selection`]), concurrency, retries, timeouts and the
//! `-listen` flags.

use super::listen_flags::{listen_options, LISTEN, LISTEN_LINGER, LISTEN_TOKEN_FILE};
use super::rsync_flags::{http_config, selection, LOCATORS, MTIME, SHARD, SIZE};
use super::{fatal, parse_go_command, usage_error};
use crate::commands::touch::{self, TouchArgs};
use crate::gocompat::flag::{flag, invalid, FlagKind, FlagSpec, ParsedFlags};
use crate::mover::RetryPolicy;
use crate::net::IoBackend;

pub const TOUCH_FLAGS: &[FlagSpec] = &[
    flag("dst", FlagKind::String, "", "Destination configuration filename or NAME ($HOME/.config/arvados/NAME.conf); its token must be the SystemRootToken"),
    flag("dst-keep-services-json", FlagKind::String, "", "Destination keep services: the JSON text itself, or a file holding it (skips discovery)"),
    LOCATORS,
    flag("prefix", FlagKind::String, "", "Touch every block whose hash starts with this (with -locators: only the listed blocks under it)"),
    flag("all", FlagKind::Bool, "false", "Touch every block of the destination"),
    SHARD,
    SIZE,
    MTIME,
    flag("concurrency", FlagKind::Int, "512", "Most TOUCH requests in flight at once (a ceiling: -per-server-requests binds first on a few keepstores)"),
    super::rsync_flags::PER_SERVER_REQUESTS,
    flag("retries", FlagKind::Int, "2", "Retries per request after the first attempt"),
    super::rsync_flags::RETRY_DELAY,
    super::rsync_flags::PREFIX_LENGTH,
    super::rsync_flags::IO,
    super::rsync_flags::CONNECT_TIMEOUT,
    super::rsync_flags::FIRST_BYTE_TIMEOUT,
    super::rsync_flags::IDLE_TIMEOUT,
    super::rsync_flags::MIN_RATE,
    flag("report", FlagKind::String, "", "Write one JSON line per touched copy, failure or block not found to this file"),
    flag("json", FlagKind::String, "", "Write the totals as JSON to this file"),
    LISTEN,
    LISTEN_TOKEN_FILE,
    LISTEN_LINGER,
    flag("version", FlagKind::Bool, "false", "Print version information and exit."),
];

pub fn touch_args(parsed: &ParsedFlags) -> Result<TouchArgs, String> {
    let select = selection(parsed)?;
    let all = parsed.is_true("all");
    match (select.locators.is_some(), all, select.prefix.is_empty()) {
        (true, true, _) => return Err("-locators and -all exclude each other".to_string()),
        (false, true, false) => return Err("-prefix and -all exclude each other".to_string()),
        (false, false, true) => {
            return Err(
                "say what to touch: -locators FILE (- for standard input), -prefix P, or -all"
                    .to_string(),
            )
        }
        _ => {}
    }
    let io_text = parsed.text("io");
    let io: IoBackend = io_text
        .parse()
        .map_err(|_| invalid("io", io_text, "expected auto, uring or epoll"))?;
    Ok(TouchArgs {
        dst: parsed.text("dst").to_string(),
        dst_keep_services_json: parsed
            .non_empty("dst-keep-services-json")
            .map(str::to_string),
        select,
        io,
        http: http_config(parsed)?,
        concurrency: parsed.int_in("concurrency", 1..=65_536)?,
        per_server_requests: parsed.int_in("per-server-requests", 1..=65_536)?,
        retry: RetryPolicy {
            retries: parsed.int_in("retries", 0..=100)?,
            delay: parsed.duration("retry-delay", false)?,
        },
        prefix_length: parsed.int_in("prefix-length", 0..=8)?,
        report: parsed.non_empty("report").map(Into::into),
        json: parsed.non_empty("json").map(Into::into),
        listen: listen_options(parsed)?,
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
        // The filters and the shard narrow; they do not say what to touch on their own.
        assert!(args(&["-size", "1..", "-shard", "0/2"]).is_err());
        let listed = args(&["-locators", "-"]).expect("stdin").select;
        assert_eq!(listed.locators.as_deref(), Some("-"));
        assert_eq!(listed.prefix, "");
        assert_eq!(
            args(&["-prefix", "ab"]).expect("prefix").select.prefix,
            "ab"
        );
        assert!(args(&["-prefix", "AB"]).is_err());
        // The copy's parsing: the same errors for the same texts.
        let err = args(&["-all", "-size", "2..1"]).expect_err("empty range");
        assert!(err.contains("lower bound is above"), "{err}");
        assert!(args(&["-all", "-shard", "3/2"]).is_err());
        let some = args(&[
            "-all", "-shard", "1/4", "-mtime", "..720h", "-size", "1KiB..",
        ])
        .expect("narrowed")
        .select;
        assert_eq!(some.shard.map(|s| (s.index, s.count)), Some((1, 4)));
        assert_eq!(some.filter.min_size, Some(1024));
        assert!(some.filter.max_mtime.is_some());
        // The retry default is the copy's.
        assert_eq!(args(&["-all"]).expect("all").retry, touch::default_retry());
    }
}
