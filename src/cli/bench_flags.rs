//! keep-exercise's flags for `keepmover bench` (names, kinds, defaults), in Go syntax, plus
//! `-config`, `-io` and `-json`; and their translation into [`BenchArgs`].

use super::listen_flags::{listen_options, LISTEN, LISTEN_LINGER, LISTEN_TOKEN_FILE};
use super::{parse_go_command, usage_error};
use crate::commands::bench::{self, BenchArgs, BenchError};
use crate::gocompat::flag::{flag, FlagKind, FlagSpec};

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
    LISTEN,
    LISTEN_TOKEN_FILE,
    LISTEN_LINGER,
    flag("concurrency", FlagKind::Int, "1", "keepmover: requests in flight per reader/writer thread (tasks on the io_uring engine)"),
    flag("block-sizes", FlagKind::String, "", "keepmover: write sizes to pick from at random, e.g. 4KiB,1MiB,64MiB, or 'mixed' (mostly small blocks, most bytes in big ones); overrides -block-size for writes"),
    flag("mix", FlagKind::String, "", "keepmover: R:W read/write ratio; every task then reads or writes in that ratio (e.g. 3:1)"),
    flag("rate", FlagKind::String, "", "keepmover: cap on requests per second across all tasks (e.g. 200), for latency-at-load curves"),
    flag("plot", FlagKind::String, "", "keepmover: draw throughput and p99 latency over time (against concurrency with -sweep) into this SVG file"),
    flag("sweep", FlagKind::String, "", "keepmover: comma list of -concurrency levels to run one after another (e.g. 1,4,16,64,256); prints throughput and p99 per level and the knee"),
];

/// `-block-sizes`: a comma list of sizes (`4KiB,1MiB,64MiB`) or `mixed`, where most blocks
/// are small and most bytes are in 64 MiB blocks, as in a real Keep cluster.
fn parse_block_sizes(text: &str) -> Result<Vec<usize>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text == "mixed" {
        let mut sizes = vec![4 << 10; 10];
        sizes.extend([64 << 10; 5]);
        sizes.extend([1 << 20; 4]);
        sizes.push(64 << 20);
        return Ok(sizes);
    }
    text.split(',')
        .map(|part| {
            super::parse_byte_size(part)
                .filter(|n| (1..=64 << 20).contains(n))
                .map(|n| n as usize)
                .ok_or_else(|| {
                    format!("invalid value {part:?} in -block-sizes: expected sizes up to 64MiB")
                })
        })
        .collect()
}

pub fn run_bench(program: &str, args: &[String]) -> i32 {
    let parsed = match parse_go_command(program, &format!("{program} bench"), BENCH_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = (|| -> Result<BenchArgs, String> {
        Ok(BenchArgs {
            block_size: parsed.int_in("block-size", 1..=67_108_864)?,
            read_threads: parsed.int_in("rthreads", 0..=65_536)?,
            write_threads: parsed.int_in("wthreads", 0..=65_536)?,
            vary_request: parsed.is_true("vary-request"),
            vary_thread: parsed.is_true("vary-thread"),
            replicas: parsed.int_in("replicas", 1..=1000)?,
            stats_interval: parsed.duration("stats-interval", false)?,
            service_url: parsed.text("url").to_string(),
            service_uuid: parsed.text("uuid").to_string(),
            run_time: parsed.duration("run-time", false)?,
            repeat: parsed.int_in("repeat", 1..=1_000_000)?,
            use_index: parsed.is_true("use-index"),
            config: parsed.text("config").to_string(),
            io: parsed.text("io").parse()?,
            json: parsed.non_empty("json").map(Into::into),
            listen: listen_options(&parsed)?,
            concurrency: parsed.int_in("concurrency", 1..=65_536)?,
            plot: parsed.non_empty("plot").map(Into::into),
            block_sizes: parse_block_sizes(parsed.text("block-sizes"))?,
            mix: match parsed.non_empty("mix") {
                None => None,
                Some(text) => {
                    let parsed = text
                        .split_once(':')
                        .and_then(|(r, w)| Some((r.trim().parse::<u32>().ok()?, w.trim().parse::<u32>().ok()?)))
                        .filter(|(r, w)| r + w > 0);
                    Some(parsed.ok_or_else(|| format!("invalid value {text:?} for flag -mix: expected R:W such as 3:1"))?)
                }
            },
            rate: match parsed.non_empty("rate") {
                None => None,
                Some(text) => Some(
                    text.parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0 && r.is_finite())
                        .ok_or_else(|| format!("invalid value {text:?} for flag -rate: expected requests per second"))?,
                ),
            },
            sweep: match parsed.non_empty("sweep") {
                None => Vec::new(),
                Some(text) => text
                    .split(',')
                    .map(|v| v.trim().parse::<usize>().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("invalid value {text:?} for flag -sweep: expected levels such as 1,4,16,64"))?,
            },
        })
    })();
    let typed = match typed {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match bench::run(typed) {
        Ok(()) => crate::exit::SUCCESS,
        Err(BenchError::Usage(message)) => super::fatal(&message),
        Err(e) => super::fatal(&e.to_string()),
    }
}
