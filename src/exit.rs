//! The one exit-code table of every keepmover command, with its precedence (the first row
//! that applies wins):
//!
//! | code | meaning |
//! |---|---|
//! | 2 | usage error |
//! | 130 / 143 | stopped by SIGINT / by SIGTERM or a `cancel` request, after a graceful stop |
//! | 10 | `-max-duration` reached |
//! | 8 | `-max-transfer` reached |
//! | 1 | blocks failed, validation found problems, or any other error |
//! | 0 | everything done and confirmed |

use crate::mover::StopReason;

pub const USAGE: i32 = 2;
pub const INTERRUPTED: i32 = 130;
pub const TERMINATED: i32 = 143;
pub const MAX_DURATION: i32 = 10;
pub const MAX_TRANSFER: i32 = 8;
pub const FAILURE: i32 = 1;
pub const SUCCESS: i32 = 0;

/// How a command that ran ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Why it stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// Blocks failed, findings of a validation, shards missing: anything not right.
    pub problems: u64,
}

impl Outcome {
    /// The exit code, by the table's precedence.
    pub fn code(&self) -> i32 {
        match self.stopped {
            Some(StopReason::Interrupted) => INTERRUPTED,
            Some(StopReason::Terminated) => TERMINATED,
            Some(StopReason::MaxDuration) => MAX_DURATION,
            Some(StopReason::MaxTransfer) => MAX_TRANSFER,
            None if self.problems > 0 => FAILURE,
            None => SUCCESS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let outcome = |stopped, problems| Outcome { stopped, problems }.code();
        assert_eq!(outcome(None, 0), 0);
        assert_eq!(outcome(None, 3), 1);
        assert_eq!(outcome(Some(StopReason::MaxTransfer), 3), 8);
        assert_eq!(outcome(Some(StopReason::MaxDuration), 0), 10);
        assert_eq!(outcome(Some(StopReason::Interrupted), 3), 130);
        assert_eq!(outcome(Some(StopReason::Terminated), 0), 143);
    }
}
