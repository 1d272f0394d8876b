//! keep-rsync's command-line behaviour, checked on the real binary: exit codes, where the
//! text goes (stdout or stderr) and the exact messages operators' scripts look for.

use std::process::{Command, Output};

fn keepmover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args)
        .env("HOME", "/nonexistent-home")
        .output()
        .expect("run keepmover")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_prints_to_stdout_and_exits_zero() {
    for flag in ["-version", "--version", "-version=true"] {
        let out = keepmover(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("keepmover "), "{flag}: {stdout}");
        assert!(stdout.trim_end().ends_with(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn help_goes_to_stderr_with_exit_zero_and_lists_subcommands() {
    for flag in ["-help", "-h", "--help"] {
        let out = keepmover(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let err = stderr(&out);
        assert!(err.starts_with("Usage of keepmover:\n"), "{err}");
        for needle in [
            "  -src string\n",
            "  -dst string\n",
            "  -replications int\n",
            "  -src-blob-signature-ttl duration\n",
            "  -version\n",
            "demo",
        ] {
            assert!(err.contains(needle), "{flag}: missing {needle:?} in\n{err}");
        }
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = keepmover(&["-nosuchflag"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error parsing command line arguments: flag provided but not defined: -nosuchflag (try -help)\n"
    );
}

#[test]
fn bad_values_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-replications", "two"],
            "invalid value \"two\" for flag -replications: parse error",
        ),
        (
            &["-src-blob-signature-ttl", "5x"],
            "invalid value \"5x\" for flag -src-blob-signature-ttl: parse error",
        ),
        (
            &["-version=maybe"],
            "invalid boolean value \"maybe\" for -version: parse error",
        ),
        (&["-src"], "flag needs an argument: -src"),
        (
            &["-memory", "lots"],
            "invalid value \"lots\" for flag -memory",
        ),
        (&["-io", "kqueue"], "invalid value \"kqueue\" for flag -io"),
        (
            &["-prefix", "XYZ"],
            "invalid value \"XYZ\" for flag -prefix",
        ),
    ];
    for (args, message) in cases {
        let out = keepmover(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("error parsing command line arguments: {message}")),
            "{args:?}: {err}"
        );
        assert!(err.trim_end().ends_with("(try -help)"), "{err}");
    }
}

#[test]
fn positional_arguments_are_refused() {
    let out = keepmover(&["-src", "a", "extra", "more"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "unrecognized command line arguments: [extra more] (try -help)\n"
    );
}

#[test]
fn missing_config_fails_like_log_fatalf() {
    let out = keepmover(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // `YYYY/MM/DD HH:MM:SS ` then keep-rsync's message.
    assert_eq!(&err[4..5], "/", "{err}");
    assert!(
        err[20..]
            .starts_with("Error loading src configuration from file: config file not specified"),
        "{err}"
    );
}

#[test]
fn settings_line_without_equals_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.conf");
    std::fs::write(
        &path,
        "ARVADOS_API_HOST=x:1\n\nthis line has no equals sign\n",
    )
    .unwrap();
    let out = keepmover(&["-src", path.to_str().unwrap(), "-dst", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 3"), "{err}");
    assert!(
        !err.contains("this line has no equals sign"),
        "secrets could be echoed: {err}"
    );
}

#[test]
fn keep_rsync_symlink_behaves_identically() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("keep-rsync");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keepmover"), &link).unwrap();
    let out = Command::new(&link).arg("-version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("keep-rsync "));
    let out = Command::new(&link).arg("-bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(&link).arg("-help").output().unwrap();
    assert!(stderr(&out).starts_with("Usage of keep-rsync:\n"));
}
