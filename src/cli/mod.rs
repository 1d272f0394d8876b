//! Command-line parsing: keep-rsync's Go-style flags (the drop-in form, also reached through a
//! symlink named `keep-rsync`) and keepmover's own subcommands with conventional `--long`
//! flags. This is the only module that knows about argv; it turns it into plain option
//! structs for `commands`, and turns their errors into a message and an exit code.

mod bench_flags;
use crate::gocompat::flag as goflag;
mod rsync_flags;

use std::ffi::OsString;
use std::io::Write as _;

use crate::commands;
use goflag::GoFlagError;
pub use rsync_flags::parse_byte_size;

/// Exit code for command-line mistakes (Go's `EXIT_INVALIDARGUMENT`).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a run that failed (Go's `log.Fatalf`).
pub const EXIT_FAILURE: i32 = 1;

/// keepmover's version, printed by `-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const SUBCOMMANDS: &str = "\
Subcommands (keepmover SUBCOMMAND --help for their flags):
  demo     copy between two simulated clusters started in this process (the first thing to try)
  rsync    the keep-rsync drop-in form, spelled out (same flags as with no subcommand)
  bench    keepstore throughput benchmark with keep-exercise's flags and CSV

With no subcommand, keepmover takes keep-rsync's flags, e.g.
  keepmover -src old -dst new -replications 2
";

/// Parses `args` (including argv\[0\]) and runs the chosen command; returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = match args
        .into_iter()
        .map(|a| a.into_string())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(a) => a,
        Err(bad) => {
            eprintln!(
                "error parsing command line arguments: argument is not valid UTF-8: {:?} (try -help)",
                bad
            );
            return EXIT_USAGE;
        }
    };
    let program = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "keepmover".to_string());
    let rest = args.get(1..).unwrap_or(&[]);
    if program == "keep-rsync" {
        return rsync_flags::run_rsync(&program, rest);
    }
    match rest.first().map(String::as_str) {
        Some("rsync") => rsync_flags::run_rsync(&program, &rest[1..]),
        Some("demo") => commands::demo::run_cli(&program, &rest[1..]),
        Some("bench") => bench_flags::run_bench(&program, &rest[1..]),

        Some("help") => {
            print_usage(&program);
            0
        }
        _ => rsync_flags::run_rsync(&program, rest),
    }
}

/// Usage for the drop-in form, to stderr like Go's flag package, followed by the subcommands.
fn print_usage(program: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "Usage of {program}:\n{}\n{SUBCOMMANDS}",
        goflag::print_defaults(rsync_flags::RSYNC_FLAGS)
    );
}

/// Maps a Go-flag parse result onto keep-rsync's behaviour: usage and exit 0 for help,
/// Go's message plus `(try -help)` and exit 2 otherwise.
fn flag_error_exit(program: &str, error: GoFlagError) -> i32 {
    match error {
        GoFlagError::Help => {
            print_usage(program);
            0
        }
        GoFlagError::Invalid(message) => {
            eprintln!("error parsing command line arguments: {message} (try -help)");
            EXIT_USAGE
        }
    }
}

/// The shared front half of every Go-style command: parse `args` against `specs`, then
/// handle `-help` (usage to stderr, exit 0), parse errors and positional arguments (exit 2),
/// and `-version` (exit 0) exactly as keep-rsync and keep-exercise do. `Err` carries the
/// exit code when the command must not run.
fn parse_go_command(
    program: &str,
    usage_title: &str,
    specs: &[goflag::FlagSpec],
    args: &[String],
) -> Result<goflag::ParsedFlags, i32> {
    let parsed = match goflag::parse(specs, args, &|d| {
        crate::gocompat::duration::parse_go_duration(d).is_ok()
    }) {
        Ok(p) => p,
        Err(GoFlagError::Help) if !usage_title.is_empty() => {
            eprintln!("Usage of {usage_title}:\n{}", goflag::print_defaults(specs));
            return Err(0);
        }
        Err(e) => return Err(flag_error_exit(program, e)),
    };
    if !parsed.positional.is_empty() {
        eprintln!(
            "unrecognized command line arguments: [{}] (try -help)",
            parsed.positional.join(" ")
        );
        return Err(EXIT_USAGE);
    }
    if parsed.is_true("version") {
        println!("{program} {VERSION}");
        return Err(0);
    }
    Ok(parsed)
}

/// A usage error found after parsing (a value out of range): Go's wording, exit 2.
fn usage_error(message: &str) -> i32 {
    eprintln!("error parsing command line arguments: {message} (try -help)");
    EXIT_USAGE
}

/// Prints a fatal error the way Go's `log.Fatalf` does: `YYYY/MM/DD HH:MM:SS message`.
pub fn fatal(message: &str) -> i32 {
    eprintln!("{} {message}", crate::gocompat::log_timestamp());
    EXIT_FAILURE
}
