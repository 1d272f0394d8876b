//! keep-exercise's flags for `keepmover bench` (names, kinds, defaults), in Go syntax, plus
//! `-config`, `-io` and `-json`; and their translation into [`BenchArgs`].

use super::goflag::{self, flag, FlagKind, FlagSpec};
use super::{parse_go_command, usage_error, EXIT_FAILURE};
use crate::commands::bench::{self, BenchArgs, BenchError};
use crate::keep::duration::parse_go_duration;

pub const BENCH_FLAGS: &[FlagSpec] = &[
    flag("block-size", FlagKind::Int, "67108864", "bytes per read/write op"),
    flag("rthreads", FlagKind::Int, "1", "number of concurrent readers"),
    flag("wthreads", FlagKind::Int, "1", "number of concurrent writers"),
    flag("vary-request", FlagKind::Bool, "false", "vary the data for each request: consumes disk space, exercises write behavior"),
    flag("vary-thread", FlagKind::Bool, "false", "use -wthreads different data blocks"),
    flag("replicas", FlagKind::Int, "1", "replication level for writing"),
    flag("stats-interval", FlagKind::Duration, "1s", "time interval between IO stats reports, or 0 to disable"),
    flag("url", FlagKind::String, "", "specify scheme://host of a single keep service to exercise (instead of using all advertised services like normal clients)"),
    flag("uuid", FlagKind::String, "", "specify UUID of a single advertised keep service to exercise"),
    flag("run-time", FlagKind::Duration, "0s", "time to run (e.g. 60s), or 0 to run until interrupted (keepmover; keep-exercise ends right after warm-up)"),
    flag("repeat", FlagKind::Int, "1", "number of times to repeat the experiment"),
    flag("use-index", FlagKind::Bool, "false", "use the GetIndex call to get a list of blocks to read. Requires the SystemRoot token."),
    flag("version", FlagKind::Bool, "false", "Print version information and exit."),
    flag("config", FlagKind::String, "", "keepmover: settings file or NAME (as -src); default: ARVADOS_* from the environment"),
    flag("io", FlagKind::String, "auto", "keepmover: I/O backend: auto, uring, epoll"),
    flag("json", FlagKind::String, "", "keepmover: also write a JSON report (throughput, errors by kind, latency percentiles) to this file"),
];

pub fn run_bench(program: &str, args: &[String]) -> i32 {
    let parsed = match parse_go_command(program, &format!("{program} bench"), BENCH_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let int = |name: &str, default: i64| -> Result<u64, String> {
        let v = parsed
            .get(name)
            .and_then(goflag::parse_go_int)
            .unwrap_or(default);
        u64::try_from(v).map_err(|_| format!("-{name} must not be negative, got {v}"))
    };
    let duration = |name: &str, default: &str| {
        parse_go_duration(parsed.get(name).unwrap_or(default)).unwrap_or_default()
    };
    let typed = (|| -> Result<BenchArgs, String> {
        let block_size = int("block-size", 67_108_864)?;
        if block_size == 0 || block_size > 67_108_864 {
            return Err(format!("-block-size must be 1..67108864, got {block_size}"));
        }
        Ok(BenchArgs {
            block_size: block_size as usize,
            read_threads: int("rthreads", 1)? as usize,
            write_threads: int("wthreads", 1)? as usize,
            vary_request: parsed.is_true("vary-request"),
            vary_thread: parsed.is_true("vary-thread"),
            replicas: int("replicas", 1)? as u32,
            stats_interval: duration("stats-interval", "1s"),
            service_url: parsed.get("url").unwrap_or("").to_string(),
            service_uuid: parsed.get("uuid").unwrap_or("").to_string(),
            run_time: duration("run-time", "0s"),
            repeat: int("repeat", 1)? as u32,
            use_index: parsed.is_true("use-index"),
            config: parsed.get("config").unwrap_or("").to_string(),
            io: parsed.get("io").unwrap_or("auto").parse()?,
            json: parsed.get("json").filter(|p| !p.is_empty()).map(Into::into),
        })
    })();
    let typed = match typed {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match bench::run(typed) {
        Ok(()) => 0,
        Err(BenchError::Usage(message)) => super::fatal(&message),
        Err(e) => {
            super::fatal(&e.to_string());
            EXIT_FAILURE
        }
    }
}
