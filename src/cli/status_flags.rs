//! `keepmover status [-json] [ADDR]` and `keepmover ctl ADDR ACTION [VALUE]`: flags and
//! positionals of the clients of a job's `-listen` endpoint, in the same Go flag syntax as
//! every command (flags first, then the positionals).

use super::fatal;
use super::listen_flags::LISTEN_TOKEN_FILE;
use crate::commands::listen::read_token_file;
use crate::commands::status::{self, ClientError};
use crate::exit;
use crate::gocompat::flag::{self as goflag, flag, FlagKind, FlagSpec, GoFlagError, ParsedFlags};

const STATUS_FLAGS: &[FlagSpec] = &[
    flag(
        "json",
        FlagKind::Bool,
        "false",
        "print the status document as JSON instead of the summary",
    ),
    LISTEN_TOKEN_FILE,
];

const CTL_FLAGS: &[FlagSpec] = &[LISTEN_TOKEN_FILE];

const STATUS_USAGE: &str = "keepmover status [-json] [-listen-token-file FILE] [ADDR]
  ADDR is what the job was given as -listen (127.0.0.1:9100, [::1]:9100, unix:/path);
  without it, lists the running jobs started with -listen on this machine";

const CTL_USAGE: &str = "keepmover ctl [-listen-token-file FILE] ADDR ACTION [VALUE]
  ACTION: pause | resume | cancel | concurrency N | bwlimit RATE (10MiB, UP:DOWN, 0 = off)";

/// Flags and positionals, or the exit code when the command must not run.
fn parse(specs: &[FlagSpec], usage: &str, args: &[String]) -> Result<ParsedFlags, i32> {
    match goflag::parse(specs, args) {
        Ok(p) => Ok(p),
        Err(GoFlagError::Help) => {
            eprintln!("Usage: {usage}\n{}", goflag::print_defaults(specs));
            Err(exit::SUCCESS)
        }
        Err(GoFlagError::Invalid(message)) => {
            eprintln!("error parsing command line arguments: {message} (try -help)");
            Err(exit::USAGE)
        }
    }
}

/// The token from `-listen-token-file`, if given.
fn token(parsed: &ParsedFlags) -> Result<Option<String>, i32> {
    match parsed.non_empty("listen-token-file") {
        Some(path) => read_token_file(std::path::Path::new(path))
            .map(Some)
            .map_err(|e| {
                eprintln!("error parsing command line arguments: -listen-token-file: {e}");
                exit::USAGE
            }),
        None => Ok(None),
    }
}

fn client_error(e: ClientError) -> i32 {
    match e {
        ClientError::Usage(message) => {
            eprintln!("error parsing command line arguments: {message} (try -help)");
            exit::USAGE
        }
        other => fatal(&other.to_string()),
    }
}

/// `keepmover status`.
pub fn run_status(args: &[String]) -> i32 {
    let parsed = match parse(STATUS_FLAGS, STATUS_USAGE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let token = match token(&parsed) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let json = parsed.is_true("json");
    match parsed.positional.as_slice() {
        [] => {
            print!("{}", status::list(json, token.as_deref()));
            exit::SUCCESS
        }
        [addr] => match status::status(addr, json, token.as_deref()) {
            Ok(text) => {
                print!("{text}");
                exit::SUCCESS
            }
            Err(e) => client_error(e),
        },
        more => {
            eprintln!(
                "unrecognized command line arguments: [{}] (try -help)",
                more[1..].join(" ")
            );
            exit::USAGE
        }
    }
}

/// `keepmover ctl`.
pub fn run_ctl(args: &[String]) -> i32 {
    let parsed = match parse(CTL_FLAGS, CTL_USAGE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let token = match token(&parsed) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (addr, action, value) = match parsed.positional.as_slice() {
        [addr, action] => (addr, action, None),
        [addr, action, value] => (addr, action, Some(value.as_str())),
        _ => {
            eprintln!("Usage: {CTL_USAGE}");
            return exit::USAGE;
        }
    };
    match status::ctl(addr, action, value, token.as_deref()) {
        Ok(done) => {
            println!("{done}");
            exit::SUCCESS
        }
        Err(e) => client_error(e),
    }
}
