//! keep-rsync's flags, exactly (names, kinds, defaults, usage texts), plus keepmover's tuning
//! flags in the same Go style, and their translation into [`RsyncArgs`].

use super::{fatal, parse_go_command, usage_error};
use crate::commands::rsync::{self, RsyncArgs};
use crate::gocompat::duration::parse_go_duration;
use crate::gocompat::flag::{self as goflag, flag, FlagKind, FlagSpec};
use crate::net::IoBackend;

/// keep-rsync's eight flags followed by keepmover's extensions.
pub const RSYNC_FLAGS: &[FlagSpec] = &[
    flag("src", FlagKind::String, "", "Source configuration filename. May be either a pathname to a config file, or (for example) 'foo' as shorthand for $HOME/.config/arvados/foo.conf file. This file is expected to specify the values for ARVADOS_API_TOKEN, ARVADOS_API_HOST, ARVADOS_API_HOST_INSECURE, and ARVADOS_BLOB_SIGNING_KEY for the source."),
    flag("dst", FlagKind::String, "", "Destination configuration filename. May be either a pathname to a config file, or (for example) 'foo' as shorthand for $HOME/.config/arvados/foo.conf file. This file is expected to specify the values for ARVADOS_API_TOKEN, ARVADOS_API_HOST, and ARVADOS_API_HOST_INSECURE for the destination."),
    flag("src-keep-services-json", FlagKind::String, "", "An optional JSON configuration file for the source keep services. If provided, this file is used instead of taking the keep services from the source's API server. (keepmover: the JSON text itself, or a path to a file holding it.)"),
    flag("dst-keep-services-json", FlagKind::String, "", "An optional JSON configuration file for the destination keep services. If provided, this file is used instead of taking the keep services from the destination's API server. (keepmover: the JSON text itself, or a path to a file holding it.)"),
    flag("replications", FlagKind::Int, "0", "Number of replications to write to the destination. If replications not specified, default replication level configured on destination server will be used."),
    flag("prefix", FlagKind::String, "", "Index prefix"),
    flag("src-blob-signature-ttl", FlagKind::Duration, "0s", "Lifetime of blob permission signatures on source keepservers. If not provided, this will be retrieved from the API server's discovery document."),
    flag("version", FlagKind::Bool, "false", "Print version information and exit."),
    // keepmover extensions
    flag("workers", FlagKind::Int, "0", "keepmover: worker threads, each with its own io_uring ring (0 = one per two cores)"),
    flag("concurrency", FlagKind::Int, "32", "keepmover: blocks in flight per worker thread"),
    flag("memory", FlagKind::String, "1GiB", "keepmover: memory budget for block buffers (e.g. 512MiB, 4GiB); at least 64MiB"),
    flag("io", FlagKind::String, "auto", "keepmover: I/O backend: auto (io_uring if the kernel allows it, else epoll), uring, epoll"),
    flag("checkpoint", FlagKind::String, "", "keepmover: resume file; the run skips the hash prefixes it records as done and records each prefix once all its blocks are confirmed"),
    flag("connect-timeout", FlagKind::Duration, "10s", "keepmover: TCP connect + TLS handshake timeout"),
    flag("first-byte-timeout", FlagKind::Duration, "60s", "keepmover: time from a request being sent to its response head arriving"),
    flag("idle-timeout", FlagKind::Duration, "60s", "keepmover: longest time a transfer may go without moving a byte (replaces keep-rsync's 20s whole-request cap)"),
    flag("retries", FlagKind::Int, "2", "keepmover: retries per block after the first attempt, as keepclient's Retries"),
    flag("retry-delay", FlagKind::Duration, "2s", "keepmover: first retry delay; doubles each time, capped at 10x"),
    flag("prefix-length", FlagKind::Int, "0", "keepmover: hex digits per index slice (0 = chosen from the block count so a slice holds about a million locators)"),
    flag("progress", FlagKind::String, "auto", "keepmover: auto (a live bar on a terminal, keep-rsync's log lines otherwise), bar, log"),
    flag("skip-count", FlagKind::Bool, "false", "keepmover: do not walk the indexes once to count before copying (saves a full index read on very large clusters); totals in the log lines are then those found so far"),
    flag("dry-run", FlagKind::Bool, "false", "keepmover: walk and diff the indexes, report what would be copied, copy nothing"),
];

/// Runs the drop-in form: parse, then hand over to `commands::rsync`.
pub fn run_rsync(program: &str, args: &[String]) -> i32 {
    let parsed = match parse_go_command(program, "", RSYNC_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let args = match rsync_args(&parsed) {
        Ok(a) => a,
        Err(message) => return usage_error(&message),
    };
    match rsync::run(args) {
        Ok(()) => 0,
        Err(e) => fatal(&e.to_string()),
    }
}

fn duration_flag(parsed: &goflag::ParsedFlags, name: &str, default: &str) -> std::time::Duration {
    let text = parsed.get(name).unwrap_or(default);
    parse_go_duration(text).unwrap_or_default()
}

fn int_flag(parsed: &goflag::ParsedFlags, name: &str, default: i64) -> i64 {
    parsed
        .get(name)
        .and_then(goflag::parse_go_int)
        .unwrap_or(default)
}

/// Turns validated flag texts into typed arguments; errors are usage errors.
fn rsync_args(parsed: &goflag::ParsedFlags) -> Result<RsyncArgs, String> {
    let non_negative = |name: &str, default: i64| -> Result<u64, String> {
        let value = int_flag(parsed, name, default);
        u64::try_from(value).map_err(|_| format!("-{name} must not be negative, got {value}"))
    };
    let memory_text = parsed.get("memory").unwrap_or("1GiB");
    let memory_budget = parse_byte_size(memory_text)
        .ok_or_else(|| format!("invalid value {memory_text:?} for flag -memory: expected a size such as 512MiB or 4GiB"))?;
    if memory_budget < 64 << 20 {
        return Err(format!(
            "-memory {memory_text} is below 64MiB, the largest Keep block"
        ));
    }
    let io_text = parsed.get("io").unwrap_or("auto");
    let io: IoBackend = io_text.parse().map_err(|_| {
        format!("invalid value {io_text:?} for flag -io: expected auto, uring or epoll")
    })?;
    let progress = match parsed.get("progress").unwrap_or("auto") {
        "auto" => rsync::ProgressStyle::Auto,
        "bar" => rsync::ProgressStyle::Bar,
        "log" => rsync::ProgressStyle::Log,
        other => {
            return Err(format!(
                "invalid value {other:?} for flag -progress: expected auto, bar or log"
            ))
        }
    };
    let prefix = parsed.get("prefix").unwrap_or("").to_string();
    if prefix.len() > 32
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "invalid value {prefix:?} for flag -prefix: expected up to 32 lowercase hex digits"
        ));
    }
    let concurrency = non_negative("concurrency", 32)?.max(1);
    Ok(RsyncArgs {
        src: parsed.get("src").unwrap_or("").to_string(),
        dst: parsed.get("dst").unwrap_or("").to_string(),
        src_keep_services_json: parsed.get("src-keep-services-json").map(str::to_string),
        dst_keep_services_json: parsed.get("dst-keep-services-json").map(str::to_string),
        replications: non_negative("replications", 0)? as u32,
        prefix,
        src_blob_signature_ttl: duration_flag(parsed, "src-blob-signature-ttl", "0s"),
        workers: non_negative("workers", 0)? as usize,
        concurrency: concurrency as usize,
        memory_budget,
        io,
        checkpoint: parsed
            .get("checkpoint")
            .filter(|p| !p.is_empty())
            .map(Into::into),
        connect_timeout: duration_flag(parsed, "connect-timeout", "10s"),
        first_byte_timeout: duration_flag(parsed, "first-byte-timeout", "60s"),
        idle_timeout: duration_flag(parsed, "idle-timeout", "60s"),
        retries: non_negative("retries", 2)? as u32,
        retry_delay: duration_flag(parsed, "retry-delay", "2s"),
        prefix_length: non_negative("prefix-length", 0)? as usize,
        progress,
        dry_run: parsed.is_true("dry-run"),
        skip_count: parsed.is_true("skip-count"),
    })
}

/// Parses sizes such as `1GiB`, `512MiB`, `64M`, `4096`: binary units, optional `B`/`iB`.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_byte_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_byte_size("64m"), Some(64 << 20));
        assert_eq!(parse_byte_size("4096"), Some(4096));
        assert_eq!(parse_byte_size("1.5G"), None);
        assert_eq!(parse_byte_size("G"), None);
        assert_eq!(parse_byte_size("99999999999T"), None);
    }
}
