//! Signals as steering: the first SIGINT or SIGTERM asks the engine for a graceful stop
//! (no new blocks; blocks in flight finish within the grace period; the checkpoint is saved
//! and the summary printed), a second one stops at once. SIGTSTP pauses and SIGCONT resumes
//! (the process is not suspended: the run keeps its connections). SIGUSR1 asks for a status
//! summary on stderr.

use std::sync::Arc;

use signal_hook::consts::{SIGCONT, SIGINT, SIGTERM, SIGTSTP, SIGUSR1};
use signal_hook::iterator::{Handle, Signals};

use crate::mover::{Control, StopReason};

/// The installed handlers; dropping this restores nothing but stops the listening thread.
pub struct SignalGuard {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Routes signals to `control`; `status` prints a summary for SIGUSR1.
pub fn install(
    control: Arc<Control>,
    status: Box<dyn Fn() + Send>,
) -> std::io::Result<SignalGuard> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGTSTP, SIGCONT, SIGUSR1])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("keepmover-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGINT | SIGTERM => {
                        if control.is_stopping() {
                            control.stop_now();
                        } else {
                            control.stop(if signal == SIGINT {
                                StopReason::Interrupted
                            } else {
                                StopReason::Terminated
                            });
                        }
                    }
                    SIGTSTP => control.pause(),
                    SIGCONT => control.resume(),
                    SIGUSR1 => status(),
                    _ => {}
                }
            }
        })?;
    Ok(SignalGuard {
        handle,
        thread: Some(thread),
    })
}
