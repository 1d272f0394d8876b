//! Which completion driver a worker's compio runtime sits on. compio is built with both its
//! `io-uring` and `polling` features, which makes compio-driver a "fusion" driver: without a
//! choice it probes io_uring at start-up and silently falls back to epoll. We want the
//! choice to be explicit and reportable, so the driver type is always forced here
//! (`ProactorBuilder::driver_type`), and `Auto` is resolved by our own probe.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime, RuntimeBuilder};

/// The I/O driver under a worker's runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoBackend {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring (completion based); fails if unavailable.
    Uring,
    /// epoll (readiness based, via the `polling` crate).
    Epoll,
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackend::Auto => "auto",
            IoBackend::Uring => "uring",
            IoBackend::Epoll => "epoll",
        })
    }
}

impl FromStr for IoBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoBackend::Uring),
            "epoll" | "poll" => Ok(IoBackend::Epoll),
            other => Err(format!(
                "unknown I/O backend {other:?} (expected auto, uring or epoll)"
            )),
        }
    }
}

/// Whether an io_uring instance can really be created here. This builds (and drops) a
/// compio proactor forced onto io_uring, so it sees everything that can stop it: an old
/// kernel, `kernel.io_uring_disabled`, a seccomp filter on `io_uring_setup`, missing opcodes.
/// The answer is computed once per process.
pub fn io_uring_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let mut builder = ProactorBuilder::new();
        builder.driver_type(DriverType::IoUring).capacity(8);
        builder.build().is_ok()
    })
}

/// io_uring set up for one thread that both submits and reaps, as every runtime here is:
/// completions' task work runs only when the thread enters the kernel to wait
/// (`DEFER_TASKRUN`, `SINGLE_ISSUER`, `COOP_TASKRUN`), instead of interrupting it at every
/// arriving packet. With hundreds of sockets in flight (small blocks) those interruptions,
/// and the socket-lock contention they cause, cost more than the I/O (BENCHMARKS.md).
fn tune_io_uring(proactor: &mut ProactorBuilder) {
    proactor
        .capacity(4096)
        .single_issuer(true)
        .defer_taskrun(true)
        .coop_taskrun(true)
        .taskrun_flag(true);
}

/// Builds a compio runtime on the requested driver; `Auto` = io_uring if available else
/// epoll. Returns the backend actually used (never `Auto`).
pub fn build_runtime(backend: IoBackend) -> std::io::Result<(Runtime, IoBackend)> {
    let chosen = match backend {
        IoBackend::Auto if io_uring_available() => IoBackend::Uring,
        IoBackend::Auto => IoBackend::Epoll,
        forced => forced,
    };
    let build = |tuned: bool| {
        let mut proactor = ProactorBuilder::new();
        proactor.driver_type(match chosen {
            IoBackend::Uring => DriverType::IoUring,
            _ => DriverType::Poll,
        });
        if tuned {
            tune_io_uring(&mut proactor);
        }
        RuntimeBuilder::new().with_proactor(proactor).build()
    };
    let runtime = match chosen {
        // An older kernel refuses the tuning flags; plain io_uring then.
        IoBackend::Uring => build(true).or_else(|_| build(false)),
        _ => build(false),
    }
    .map_err(|e| {
        if chosen == IoBackend::Uring {
            std::io::Error::new(
                e.kind(),
                format!("io_uring is not available here ({e}); use -io epoll or auto"),
            )
        } else {
            e
        }
    })?;
    let actual = match runtime.driver_type() {
        DriverType::IoUring => IoBackend::Uring,
        _ => IoBackend::Epoll,
    };
    Ok((runtime, actual))
}
