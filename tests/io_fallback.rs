//! Where io_uring is disabled (container seccomp profiles, `kernel.io_uring_disabled`),
//! keepmover must notice and fall back to epoll with the same behaviour. This runs the real
//! binary under a seccomp filter that makes `io_uring_setup` fail with EPERM, as Docker's
//! default profile does, and checks the demo still copies and verifies everything.
//! (`unsafe` is allowed here for the two system calls that install the filter.)
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

const SYS_IO_URING_SETUP: u32 = 425;

/// Installs a seccomp filter in the calling process: `io_uring_setup` → EPERM, all else allowed.
fn deny_io_uring() -> std::io::Result<()> {
    // BPF: load the syscall number; if it is io_uring_setup return ERRNO(EPERM), else ALLOW.
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ld  [0] (seccomp_data.nr)
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        }, // jeq
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers; PR_SET_SECCOMP reads the
    // program through a pointer to `program`, which (and its filter array) outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn demo(extra: &[&str], deny: bool) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepmover"));
    command.args(["demo", "--size", "8"]).args(extra);
    if deny {
        // SAFETY: the closure runs in the forked child before exec and only calls prctl.
        unsafe {
            command.pre_exec(deny_io_uring);
        }
    }
    command.output().expect("run keepmover demo")
}

#[test]
fn falls_back_to_epoll_when_io_uring_is_refused() {
    let out = demo(&[], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("(io: epoll)"), "{err}");
    assert!(err.contains("demo: OK"), "{err}");
}

#[test]
fn forcing_uring_where_it_is_refused_is_a_clear_error() {
    let out = demo(&["--io", "uring"], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("io_uring is not available here"), "{err}");
}

#[test]
fn io_uring_is_used_when_allowed() {
    let out = demo(&[], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("(io: uring)"), "{err}");
}
