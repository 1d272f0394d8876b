//! Choosing the I/O driver. io_uring is used when the kernel allows it; where it is disabled
//! (container seccomp, `kernel.io_uring_disabled`) keepmover falls back to epoll with the
//! same behaviour. `--io uring|epoll` forces one.

use std::fmt;
use std::str::FromStr;

use compio::driver::{DriverType, ProactorBuilder};

/// The I/O backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring when available, else epoll.
    Auto,
    Uring,
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
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoBackend::Uring),
            "epoll" | "poll" => Ok(IoBackend::Epoll),
            other => Err(format!(
                "unknown I/O backend {other:?} (auto, uring, epoll)"
            )),
        }
    }
}

/// Whether an io_uring runtime can be created here (a real probe: builds a ring).
pub fn io_uring_available() -> bool {
    let mut proactor = ProactorBuilder::new();
    proactor.driver_type(DriverType::IoUring);
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
        .is_ok()
}

/// Builds a compio runtime on the requested driver and says which one it got.
pub fn build_runtime(backend: IoBackend) -> std::io::Result<(compio::runtime::Runtime, IoBackend)> {
    let mut proactor = ProactorBuilder::new();
    match backend {
        IoBackend::Auto => {}
        IoBackend::Uring => {
            proactor.driver_type(DriverType::IoUring);
        }
        IoBackend::Epoll => {
            proactor.driver_type(DriverType::Poll);
        }
    }
    let runtime = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
        .map_err(|e| {
            if backend == IoBackend::Uring {
                std::io::Error::new(
                    e.kind(),
                    format!("io_uring is not available here ({e}); use --io epoll or auto"),
                )
            } else {
                e
            }
        })?;
    let used = if runtime.driver_type().is_iouring() {
        IoBackend::Uring
    } else {
        IoBackend::Epoll
    };
    Ok((runtime, used))
}
