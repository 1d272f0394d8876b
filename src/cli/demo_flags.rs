//! `keepmover demo`'s flags, in the same Go flag syntax as every other command (`-size 4096`
//! and `--size 4096` both work). The copy itself is configured through the rsync flag table,
//! so the demo runs exactly what `keepmover -src ... -dst ...` would.

use super::{fatal, parse_go_command, usage_error};
use crate::commands::demo::{self, DemoArgs};
use crate::gocompat::flag::{flag, parse, FlagKind, FlagSpec};

pub const DEMO_FLAGS: &[FlagSpec] = &[
    flag("size", FlagKind::Int, "1024", "MiB of data in the source cluster (a mix of 64 MiB, 1 MiB and small blocks)"),
    flag("io", FlagKind::String, "auto", "I/O backend: auto, uring or epoll"),
    flag("keepstores", FlagKind::Int, "3", "keepstores per simulated cluster"),
    flag("tls", FlagKind::Bool, "false", "serve both clusters over HTTPS (self-signed; the settings files say ARVADOS_API_HOST_INSECURE)"),
    flag("memory", FlagKind::String, "1GiB", "memory budget for keepmover's block buffers"),
];

pub fn run_demo(program: &str, args: &[String]) -> i32 {
    let title = format!("{program} demo");
    let parsed = match parse_go_command(program, &title, DEMO_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = (|| -> Result<DemoArgs, String> {
        let dir = demo::work_dir();
        let argv: Vec<String> = [
            "-src",
            &dir.join("srcaa.conf").display().to_string(),
            "-dst",
            &dir.join("dstbb.conf").display().to_string(),
            "-replications",
            "2",
            "-io",
            parsed.text("io"),
            "-memory",
            parsed.text("memory"),
            "-retry-delay",
            "200ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let copy = parse(super::RSYNC_FLAGS, &argv).map_err(|e| format!("{e:?}"))?;
        Ok(DemoArgs {
            size_mib: parsed.int_in("size", 1..=1 << 24)?,
            keepstores: parsed.int_in("keepstores", 1..=64)?,
            tls: parsed.is_true("tls"),
            dir,
            copy: super::rsync_args(&copy)?,
        })
    })();
    let typed = match typed {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match demo::run(typed) {
        Ok(outcome) => outcome.code(),
        Err(message) => fatal(&format!("demo failed: {message}")),
    }
}
