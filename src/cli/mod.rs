//! Command-line parsing, for every command: keep-rsync's Go-style flags (the drop-in form,
//! also reached through a symlink named `keep-rsync`) and keepmover's subcommands, all in
//! the same Go flag syntax (`-f v`, `-f=v`, `--f v`). This is the only module that knows
//! about argv; it turns it into plain option structs for `commands`, and turns their results
//! into a message and an exit code ([`crate::exit`]).

mod bench_flags;
#[cfg(feature = "demo")]
mod demo_flags;
mod listen_flags;
mod move_flags;
mod plan_flags;
mod pull_flags;
mod report_flags;
mod rsync_flags;
mod status_flags;
mod touch_flags;
mod validate_flags;

use std::ffi::OsString;
use std::io::Write as _;

use crate::exit;
use crate::gocompat::flag::{self as goflag, FlagSpec, GoFlagError};
pub use rsync_flags::{parse_byte_size, rsync_args, RSYNC_FLAGS};

/// keepmover's version, printed by `-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const SUBCOMMANDS: &str = "\
Subcommands (keepmover SUBCOMMAND -help for their flags):
  demo     copy between two simulated clusters started in this process (the first thing to try)
  rsync    the keep-rsync drop-in form, spelled out (same flags as with no subcommand)
  bench    keepstore throughput benchmark with keep-exercise's flags and CSV
  move     copy, read back, then trash the blocks on the source (keepstore's trash rules)
  vacate   empty keepstores (-src-services) into the rest of their cluster, keeping replicas
  validate prove a copy, reading only: missing, under-replicated, misplaced, size mismatch;
           -deep or -sample also read copies back and check their MD5
  preflight the copy's safety checks alone (same flags as the copy)
  touch    renew destination blocks' mtimes to extend the garbage-collection window
  plan     one job in -shards N across many hosts: a Kubernetes Indexed Job (-k8s) or a Slurm array (-slurm)
  report   report merge FILE...: add up the -json summaries of a plan's shards
  status   a running job's status (started with -listen); without an address, lists them
  ctl      steer a running job: pause, resume, cancel, concurrency N, bwlimit RATE
  pull     the destination keepstores pull the missing blocks themselves (keepstore pull
           lists); keepmover plans, watches and confirms (same key and TTL on both sides)

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
            return exit::USAGE;
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
        #[cfg(feature = "demo")]
        Some("demo") => demo_flags::run_demo(&program, &rest[1..]),
        #[cfg(not(feature = "demo"))]
        Some("demo") => fatal("this keepmover was built without the demo (cargo feature \"demo\")"),
        Some("bench") => bench_flags::run_bench(&program, &rest[1..]),
        Some("move") => move_flags::run_move(&program, &rest[1..], false),
        Some("vacate") => move_flags::run_move(&program, &rest[1..], true),
        Some("validate") => validate_flags::run_validate(&program, &rest[1..]),
        Some("preflight") => validate_flags::run_preflight(&program, &rest[1..]),
        Some("touch") => touch_flags::run_touch(&program, &rest[1..]),
        Some("plan") => plan_flags::run_plan(&program, &rest[1..]),
        Some("report") => report_flags::run_report(&program, &rest[1..]),
        Some("status") => status_flags::run_status(&rest[1..]),
        Some("ctl") => status_flags::run_ctl(&rest[1..]),
        Some("pull") => pull_flags::run_pull(&program, &rest[1..]),
        Some("help") => {
            print_usage(&program);
            exit::SUCCESS
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
        goflag::print_defaults(RSYNC_FLAGS)
    );
}

/// The shared front half of every command: parse `args` against `specs`, then handle
/// `-help` (usage to stderr, exit 0), parse errors and positional arguments (exit 2), and
/// `-version` (exit 0) exactly as keep-rsync and keep-exercise do. `Err` carries the exit
/// code when the command must not run. `usage_title` empty = the drop-in form's usage.
fn parse_go_command(
    program: &str,
    usage_title: &str,
    specs: &[FlagSpec],
    args: &[String],
) -> Result<goflag::ParsedFlags, i32> {
    parse_go_command_inner(program, usage_title, specs, args, false)
}

/// [`parse_go_command`] for a command that takes operands after its flags (`report merge
/// FILE...`): they are left in `positional` for the command.
fn parse_go_command_with_operands(
    program: &str,
    usage_title: &str,
    specs: &[FlagSpec],
    args: &[String],
) -> Result<goflag::ParsedFlags, i32> {
    parse_go_command_inner(program, usage_title, specs, args, true)
}

fn parse_go_command_inner(
    program: &str,
    usage_title: &str,
    specs: &[FlagSpec],
    args: &[String],
    operands: bool,
) -> Result<goflag::ParsedFlags, i32> {
    let parsed = match goflag::parse(specs, args) {
        Ok(p) => p,
        Err(GoFlagError::Help) if usage_title.is_empty() => {
            print_usage(program);
            return Err(exit::SUCCESS);
        }
        Err(GoFlagError::Help) => {
            eprintln!("Usage of {usage_title}:\n{}", goflag::print_defaults(specs));
            return Err(exit::SUCCESS);
        }
        Err(GoFlagError::Invalid(message)) => return Err(usage_error(&message)),
    };
    if !operands && !parsed.positional.is_empty() {
        eprintln!(
            "unrecognized command line arguments: [{}] (try -help)",
            parsed.positional.join(" ")
        );
        return Err(exit::USAGE);
    }
    if specs.iter().any(|s| s.name == "version") && parsed.is_true("version") {
        println!("{program} {VERSION}");
        return Err(exit::SUCCESS);
    }
    Ok(parsed)
}

/// A usage error found after parsing (a value out of range): Go's wording, exit 2.
fn usage_error(message: &str) -> i32 {
    eprintln!("error parsing command line arguments: {message} (try -help)");
    exit::USAGE
}

/// Prints a fatal error the way Go's `log.Fatalf` does: `YYYY/MM/DD HH:MM:SS message`.
pub fn fatal(message: &str) -> i32 {
    eprintln!("{} {message}", crate::gocompat::log_timestamp());
    exit::FAILURE
}
