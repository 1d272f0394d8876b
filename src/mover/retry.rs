//! The one retry policy of keepmover: keepclient's rounds (§6.1 step 6, §6.2). A round tries
//! servers in order; the servers whose answer was worth retrying (a [`Cause`] whose
//! [`answer`](Cause::answer) is `Retry`: 408, 429, 5xx except 507, transport trouble that
//! `NetError::is_retryable` calls retryable) form the next round, after a random delay in
//! [1 ms, m), m starting at `-retry-delay` and doubling, capped at ten times the start. A
//! server that stalled or trickled goes last in its round. Reads and writes both go through
//! [`Rounds`].
//!
//! [`Cause`]: crate::keepstore::Cause

use std::time::Duration;

use crate::keep::wire::Answer;
use crate::keepstore::Cause;

/// How many rounds, and how long between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Rounds after the first (keepclient's `Retries`).
    pub retries: u32,
    /// The first delay between rounds.
    pub delay: Duration,
}

/// What to do with a server after one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try it again next round.
    Retry,
    /// Try it again next round, after every server that did not stall.
    RetryLast,
    /// Not again for this block.
    Drop,
}

/// keepclient's decision for one failed answer.
pub fn next_for(cause: &Cause) -> Next {
    match cause.answer() {
        Answer::Retry if cause.is_slow() => Next::RetryLast,
        Answer::Retry => Next::Retry,
        _ => Next::Drop,
    }
}

/// The rounds of one block's read or write.
#[derive(Debug)]
pub struct Rounds {
    policy: RetryPolicy,
    round: u32,
    first: Option<Vec<usize>>,
    retry: Vec<usize>,
    retry_last: Vec<usize>,
    next_delay: Duration,
}

impl Rounds {
    pub fn new(policy: RetryPolicy, order: Vec<usize>) -> Rounds {
        Rounds {
            policy,
            round: 0,
            first: Some(order),
            retry: Vec::new(),
            retry_last: Vec::new(),
            next_delay: policy.delay,
        }
    }

    /// The servers of the next round: the initial order first; then, after keepclient's
    /// delay, the servers marked for a retry in the round just played. `None` when the
    /// rounds are used up or no server is worth another try.
    pub async fn next(&mut self) -> Option<Vec<usize>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let mut servers = std::mem::take(&mut self.retry);
        servers.append(&mut self.retry_last);
        if servers.is_empty() || self.round >= self.policy.retries {
            return None;
        }
        self.round += 1;
        compio::time::sleep(self.pick_delay()).await;
        Some(servers)
    }

    /// Records what `server` answered in the current round.
    pub fn mark(&mut self, server: usize, next: Next) {
        match next {
            Next::Retry => self.retry.push(server),
            Next::RetryLast => self.retry_last.push(server),
            Next::Drop => {}
        }
    }

    /// Rounds played after the first.
    pub fn retries_used(&self) -> u32 {
        self.round
    }

    fn pick_delay(&mut self) -> Duration {
        let max_ms = (self.next_delay.as_millis() as u64).max(2);
        self.next_delay = (self.next_delay * 2).min(self.policy.delay * 10);
        Duration::from_millis(rand::random_range(1..max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{NetError, Origin, Phase};

    fn status(code: u16) -> Cause {
        Cause::Status {
            status: code,
            body: String::new(),
        }
    }

    #[test]
    fn keepclient_retry_set() {
        for code in [408, 429, 500, 502, 503] {
            assert_eq!(next_for(&status(code)), Next::Retry, "{code}");
        }
        for code in [400, 404, 403, 413, 507] {
            assert_eq!(next_for(&status(code)), Next::Drop, "{code}");
        }
        let origin = Origin::parse("http://h:1").expect("test origin");
        let stalled = Cause::Net(NetError::Timeout {
            origin: origin.clone(),
            phase: Phase::Idle,
        });
        assert_eq!(next_for(&stalled), Next::RetryLast);
        // A trickle below -min-rate is as slow as a stall: last in the next round too.
        let trickled = Cause::Net(NetError::TooSlow {
            origin: origin.clone(),
            min_rate: 65536,
        });
        assert_eq!(next_for(&trickled), Next::RetryLast);
        assert_eq!(trickled.kind(), crate::keepstore::ErrorKind::Timeout);
        let tls = Cause::Net(NetError::Tls {
            origin,
            detail: "bad certificate".into(),
        });
        assert_eq!(next_for(&tls), Next::Drop, "TLS failures are final");
    }

    #[test]
    fn rounds_replay_retry_set_with_slow_servers_last() {
        let (runtime, _) = crate::net::build_runtime(crate::net::IoBackend::Auto).expect("runtime");
        runtime.block_on(async {
            let policy = RetryPolicy {
                retries: 2,
                delay: Duration::from_millis(2),
            };
            let mut rounds = Rounds::new(policy, vec![0, 1, 2]);
            assert_eq!(rounds.next().await, Some(vec![0, 1, 2]));
            rounds.mark(0, Next::RetryLast);
            rounds.mark(1, Next::Drop);
            rounds.mark(2, Next::Retry);
            assert_eq!(rounds.next().await, Some(vec![2, 0]));
            rounds.mark(2, Next::Retry);
            assert_eq!(rounds.next().await, Some(vec![2]));
            rounds.mark(2, Next::Retry);
            assert_eq!(rounds.next().await, None, "retries used up");
            assert_eq!(rounds.retries_used(), 2);
            let mut done = Rounds::new(policy, vec![5]);
            assert_eq!(done.next().await, Some(vec![5]));
            assert_eq!(done.next().await, None, "nobody asked for a retry");
        });
    }
}
