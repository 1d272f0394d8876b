//! Steering a running job from outside the engine: stop (gracefully, then at once), pause
//! and resume, the number of blocks in flight per worker, and a bandwidth limit. Signals,
//! the control endpoint and `-max-*` limits all act through this one object; the dispatcher
//! and the workers consult it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a run stopped before its end. Ordered by the exit-code table's precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopReason {
    /// SIGINT.
    Interrupted,
    /// SIGTERM, or a `cancel` request.
    Terminated,
    /// `-max-duration` reached.
    MaxDuration,
    /// `-max-transfer` reached.
    MaxTransfer,
}

/// In JSON, a stop is its [`name`](StopReason::name).
impl serde::Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl StopReason {
    /// The name in logs and JSON: `interrupted`, `terminated`, `max_duration`, `max_transfer`.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Interrupted => "interrupted",
            StopReason::Terminated => "terminated",
            StopReason::MaxDuration => "max_duration",
            StopReason::MaxTransfer => "max_transfer",
        }
    }
}

/// A token bucket shared by every worker: at most `rate` bytes per second on average, with
/// bursts of up to a quarter of a second's worth.
#[derive(Debug)]
pub struct RateLimit {
    rate: AtomicU64,
    state: Mutex<(Instant, f64)>,
}

impl RateLimit {
    fn new(rate: u64) -> RateLimit {
        RateLimit {
            rate: AtomicU64::new(rate),
            state: Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Bytes per second; 0 = unlimited.
    pub fn rate(&self) -> u64 {
        self.rate.load(Relaxed)
    }

    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Relaxed);
    }

    /// How long the caller must wait before moving `bytes` (the bytes are accounted now).
    pub fn reserve(&self, bytes: u64) -> Duration {
        let rate = self.rate();
        if rate == 0 {
            return Duration::ZERO;
        }
        let Ok(mut state) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let (last, tokens) = *state;
        let burst = rate as f64 / 4.0;
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * rate as f64).min(burst);
        let left = refilled - bytes as f64;
        *state = (now, left);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / rate as f64)
        }
    }
}

/// The shared steering wheel of one run.
#[derive(Debug)]
pub struct Control {
    stop: Mutex<Option<StopReason>>,
    stopping: AtomicBool,
    hard_stop: AtomicBool,
    paused: AtomicBool,
    /// Blocks in flight per worker; 0 = the configured default.
    concurrency: AtomicUsize,
    /// Bytes in (GET bodies) and out (PUT bodies).
    pub bw_in: RateLimit,
    pub bw_out: RateLimit,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            stop: Mutex::new(None),
            stopping: AtomicBool::new(false),
            hard_stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            concurrency: AtomicUsize::new(0),
            bw_in: RateLimit::new(0),
            bw_out: RateLimit::new(0),
        }
    }
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// Starts a graceful stop: no new blocks; blocks in flight finish (within the grace
    /// period). The first reason given is the one reported.
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut slot) = self.stop.lock() {
            slot.get_or_insert(reason);
        }
        self.stopping.store(true, Relaxed);
        self.paused.store(false, Relaxed);
    }

    /// Abandons blocks in flight (a second signal, or the grace period over).
    pub fn stop_now(&self) {
        self.hard_stop.store(true, Relaxed);
        self.stopping.store(true, Relaxed);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop.lock().ok().and_then(|s| *s)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    pub fn is_stopped_now(&self) -> bool {
        self.hard_stop.load(Relaxed)
    }

    pub fn pause(&self) {
        if !self.is_stopping() {
            self.paused.store(true, Relaxed);
        }
    }

    pub fn resume(&self) {
        self.paused.store(false, Relaxed);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Relaxed)
    }

    /// Sets blocks in flight per worker (0 = back to the configured value).
    pub fn set_concurrency(&self, n: usize) {
        self.concurrency.store(n, Relaxed);
    }

    /// Blocks in flight per worker now, given the configured value.
    pub fn concurrency(&self, configured: usize) -> usize {
        match self.concurrency.load(Relaxed) {
            0 => configured,
            n => n,
        }
    }

    /// `-bwlimit`: bytes per second in and out (0 = unlimited).
    pub fn set_bwlimit(&self, down: u64, up: u64) {
        self.bw_in.set_rate(down);
        self.bw_out.set_rate(up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reason_names_are_the_json_names() {
        for reason in [
            StopReason::Interrupted,
            StopReason::Terminated,
            StopReason::MaxDuration,
            StopReason::MaxTransfer,
        ] {
            assert_eq!(
                serde_json::to_value(reason).expect("json"),
                serde_json::Value::from(reason.name())
            );
        }
    }

    #[test]
    fn first_stop_reason_wins_and_pause_yields_to_stop() {
        let control = Control::new();
        control.pause();
        assert!(control.is_paused());
        control.stop(StopReason::MaxTransfer);
        control.stop(StopReason::Interrupted);
        assert_eq!(control.stop_reason(), Some(StopReason::MaxTransfer));
        assert!(!control.is_paused());
        control.pause();
        assert!(!control.is_paused(), "no pause while stopping");
        assert!(!control.is_stopped_now());
        control.stop_now();
        assert!(control.is_stopped_now());
    }

    #[test]
    fn rate_limit_spreads_bytes_over_time() {
        let limit = RateLimit::new(1000);
        let first = limit.reserve(100);
        assert!(first <= Duration::from_millis(100), "{first:?}");
        // Far beyond the burst: the wait is the whole deficit at the rate.
        let wait = limit.reserve(10_000);
        assert!(wait >= Duration::from_millis(9_900), "{wait:?}");
        limit.set_rate(0);
        assert_eq!(limit.reserve(1 << 40), Duration::ZERO);
    }
}
