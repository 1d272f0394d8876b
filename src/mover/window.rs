//! How many blocks one worker keeps in flight: as many as the servers' latency calls for,
//! and no more. Blocks in flight cost CPU even while they wait (connections, timers, buffers
//! touched, cache misses): on loopback 4 KiB blocks cost 26 µs each at 32 in flight and 37 µs
//! at 512. Across a real network, 5 ms each way, 32 in flight cap a worker at about 3 000
//! small blocks a second. So the number adapts (Little's law: blocks in flight = rate ×
//! latency), in the manner of TCP Vegas:
//!
//! * the signal is the time from a GET being sent to its response head, which is the
//!   source's latency plus whatever queueing keepmover's own requests cause there (and on
//!   keepmover's event loop);
//! * its floor (`base`) is the lowest tick mean of the last 30 seconds;
//! * while the tick's mean stays near the base, more blocks in flight bring more throughput,
//!   so the window grows (by a quarter per tick); once it climbs well above the base, the
//!   extra blocks only queue, so the window shrinks (by an eighth);
//! * it only grows while it is used: memory (64 MiB blocks fill a 1 GiB budget at 16), the
//!   per-server gates or an empty queue may bind first, and then there is nothing to learn;
//! * and it only grows while the destination keeps up: a GET's head says nothing of a
//!   destination whose PUTs queue (a keepstore busy checking MD5s or writing to slow disks),
//!   and there more blocks in flight only wait for their PUTs, each holding its buffer. So
//!   the time from a PUT's gate to its response head is a second signal, which can stop
//!   growth but never shrinks the window. A PUT's time includes its body's transfer, so it is
//!   judged against the base of its own size class (powers of two): a tick with more large
//!   blocks than the last is not queueing.
//!
//! `-concurrency` is the ceiling, `ctl concurrency` lowers it live, and a bandwidth limit
//! caps the window so that each transfer keeps at least twice the HTTP client's minimum
//! rate. The window never goes below [`FLOOR`] (MD5 wants many blocks for its SIMD lanes).
//!
//! [`Window`] is the worker's semaphore with a movable size; [`Controller`] is the pure
//! rule, tested without I/O.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Lowest adaptive window: AVX-512 MD5 hashes 16 blocks at once, and a few more keep the
/// lanes full while some blocks wait on the network.
pub const FLOOR: usize = 32;

/// How often the controller looks.
pub const TICK: Duration = Duration::from_millis(100);

/// Ticks of history for the base latency (30 s): long enough that the queueing keepmover
/// itself causes does not become the new base, short enough to follow a network that really
/// got slower.
const BASE_TICKS: usize = 300;

/// Heads needed in a tick for its mean to mean something.
const MIN_HEADS: u32 = 8;

/// Grow while the mean head latency is under this multiple of the base.
const GROW_BELOW: f64 = 1.5;

/// Shrink once it is over this multiple.
const SHRINK_ABOVE: f64 = 2.5;

/// PUT size classes: `ilog2(size)`, the last one holding 64 MiB blocks (Keep's largest).
const SIZE_CLASSES: usize = 27;

/// A worker's block slots: a semaphore whose size the controller moves.
#[derive(Debug)]
pub struct Window {
    limit: Cell<usize>,
    /// Slots held (a lane holds one while it waits for a block and while it copies it).
    busy: Cell<usize>,
    /// Blocks being worked on.
    working: Cell<usize>,
    /// Most blocks worked on at once since the controller last looked.
    peak: Cell<usize>,
    closed: Cell<bool>,
    waiters: RefCell<VecDeque<Waker>>,
}

/// A held slot; frees it on drop.
#[derive(Debug)]
pub struct Slot {
    window: Rc<Window>,
}

/// A block being worked on in a slot (what the window's use is measured by).
#[derive(Debug)]
pub struct Working {
    window: Rc<Window>,
}

impl Slot {
    /// The slot's lane has a block now.
    pub fn working(&self) -> Working {
        let window = &self.window;
        let working = window.working.get() + 1;
        window.working.set(working);
        window.peak.set(window.peak.get().max(working));
        Working {
            window: window.clone(),
        }
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        let window = &self.window;
        window.working.set(window.working.get().saturating_sub(1));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let window = &self.window;
        window.busy.set(window.busy.get().saturating_sub(1));
        if window.busy.get() < window.limit.get() {
            if let Some(waker) = window.waiters.borrow_mut().pop_front() {
                waker.wake();
            }
        }
    }
}

impl Window {
    pub fn new(limit: usize) -> Rc<Window> {
        Rc::new(Window {
            limit: Cell::new(limit.max(1)),
            busy: Cell::new(0),
            working: Cell::new(0),
            peak: Cell::new(0),
            closed: Cell::new(false),
            waiters: RefCell::new(VecDeque::new()),
        })
    }

    /// Waits for a slot; `None` once the window is closed (no more work for this worker).
    pub async fn enter(self: &Rc<Self>) -> Option<Slot> {
        poll_fn(|cx| {
            if self.closed.get() {
                return Poll::Ready(false);
            }
            if self.busy.get() < self.limit.get() {
                self.busy.set(self.busy.get() + 1);
                return Poll::Ready(true);
            }
            self.waiters.borrow_mut().push_back(cx.waker().clone());
            Poll::Pending
        })
        .await
        .then(|| Slot {
            window: self.clone(),
        })
    }

    /// Moves the size; slots above a lowered size are given back as their blocks finish.
    pub fn set_limit(&self, limit: usize) {
        let limit = limit.max(1);
        let grown = limit.saturating_sub(self.limit.get());
        self.limit.set(limit);
        let mut waiters = self.waiters.borrow_mut();
        for _ in 0..grown {
            match waiters.pop_front() {
                Some(waker) => waker.wake(),
                None => break,
            }
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    /// The most blocks worked on at once since the last call.
    pub fn take_peak(&self) -> usize {
        self.peak.replace(self.working.get())
    }

    /// No more work: every waiter (and later caller) gets `None`.
    pub fn close(&self) {
        self.closed.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// What the controller saw in one tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// GET response heads that arrived.
    pub heads: u32,
    /// Their latencies added up.
    pub head_latency: Duration,
    /// Successful PUTs that ended, with their latencies.
    pub puts: PutTimes,
    /// Most blocks worked on at once.
    pub peak_busy: usize,
}

/// Successful PUTs in one tick by size class: how many, and their latencies (from asking
/// for the server's gate to the response head) added up.
#[derive(Clone, Copy, Debug)]
pub struct PutTimes {
    classes: [(u32, Duration); SIZE_CLASSES],
}

impl Default for PutTimes {
    fn default() -> Self {
        PutTimes {
            classes: [(0, Duration::ZERO); SIZE_CLASSES],
        }
    }
}

impl PutTimes {
    pub fn record(&mut self, size: u64, latency: Duration) {
        let class = (size.max(1).ilog2() as usize).min(SIZE_CLASSES - 1);
        let (count, total) = &mut self.classes[class];
        *count = count.saturating_add(1);
        *total = total.saturating_add(latency);
    }

    fn count(&self) -> u32 {
        self.classes.iter().map(|&(count, _)| count).sum()
    }
}

/// The lowest tick mean of one PUT size class, and how many of the class's ticks ago it was
/// seen (past [`BASE_TICKS`] the current mean replaces it, as the GET base forgets).
#[derive(Clone, Copy, Debug)]
struct PutBase {
    seconds: f64,
    age: usize,
}

/// The adaptive rule (see the module comment).
#[derive(Debug)]
pub struct Controller {
    limit: usize,
    ceiling: usize,
    /// Mean head latency of recent ticks, in seconds (oldest first).
    recent: VecDeque<f64>,
    /// Each PUT size class's base.
    put_bases: [Option<PutBase>; SIZE_CLASSES],
}

impl Controller {
    /// Starts at [`FLOOR`] (or the ceiling, if lower).
    pub fn new(ceiling: usize) -> Controller {
        let ceiling = ceiling.max(1);
        Controller {
            limit: FLOOR.min(ceiling),
            ceiling,
            recent: VecDeque::with_capacity(BASE_TICKS),
            put_bases: [None; SIZE_CLASSES],
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One tick: returns the new window.
    pub fn tick(&mut self, sample: Sample) -> usize {
        let puts_queue = self.put_queueing(&sample.puts);
        if sample.heads < MIN_HEADS {
            return self.limit;
        }
        let mean = sample.head_latency.as_secs_f64() / f64::from(sample.heads);
        if self.recent.len() == BASE_TICKS {
            self.recent.pop_front();
        }
        self.recent.push_back(mean);
        let base = self.recent.iter().copied().fold(f64::INFINITY, f64::min);
        let floor = FLOOR.min(self.ceiling);
        if mean > base * SHRINK_ABOVE {
            self.limit = (self.limit - (self.limit / 8).max(1)).max(floor);
        } else if mean < base * GROW_BELOW && !puts_queue && sample.peak_busy * 4 >= self.limit * 3
        {
            // Used (at least three quarters of it) and not queueing: more may help.
            self.limit = (self.limit + (self.limit / 4).max(4)).min(self.ceiling);
        }
        self.limit
    }

    /// Updates each PUT size class's base with this tick's mean, and tells whether the PUTs
    /// queue: their time over their class's base, averaged over the tick's PUTs, is at
    /// [`GROW_BELOW`] or more. Too few PUTs (or none: a source-only job) say nothing.
    fn put_queueing(&mut self, puts: &PutTimes) -> bool {
        let mut weighted = 0.0;
        for (&(count, total), base) in puts.classes.iter().zip(self.put_bases.iter_mut()) {
            if count == 0 {
                continue;
            }
            let mean = total.as_secs_f64() / f64::from(count);
            let kept = match *base {
                Some(PutBase { seconds, age }) if seconds <= mean && age < BASE_TICKS => PutBase {
                    seconds,
                    age: age + 1,
                },
                _ => PutBase {
                    seconds: mean,
                    age: 0,
                },
            };
            *base = Some(kept);
            if kept.seconds > 0.0 {
                weighted += f64::from(count) * mean / kept.seconds;
            } else {
                weighted += f64::from(count);
            }
        }
        let count = puts.count();
        count >= MIN_HEADS && weighted / f64::from(count) >= GROW_BELOW
    }
}

/// The window a bandwidth limit allows: each transfer keeps at least twice `min_rate`
/// (the HTTP client fails slower ones). `None` when there is no limit or no floor.
pub fn bandwidth_cap(bytes_per_s: u64, min_rate: u64, workers: usize) -> Option<usize> {
    if bytes_per_s == 0 || min_rate == 0 {
        return None;
    }
    let per_worker = bytes_per_s / workers.max(1) as u64;
    Some((per_worker / (2 * min_rate)).max(1) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(heads: u32, mean_ms: f64, peak_busy: usize) -> Sample {
        Sample {
            heads,
            head_latency: Duration::from_secs_f64(mean_ms / 1000.0 * f64::from(heads)),
            peak_busy,
            ..Sample::default()
        }
    }

    /// `sample` with PUTs too: `(count, size, mean_ms)` each.
    fn with_puts(sample: Sample, puts: &[(u32, u64, f64)]) -> Sample {
        let mut times = PutTimes::default();
        for &(count, size, mean_ms) in puts {
            for _ in 0..count {
                times.record(size, Duration::from_secs_f64(mean_ms / 1000.0));
            }
        }
        Sample {
            puts: times,
            ..sample
        }
    }

    #[test]
    fn stops_growing_while_puts_queue_though_gets_do_not() {
        let mut c = Controller::new(512);
        // The destination keeps up at first: PUTs at their 8 ms base.
        for _ in 0..3 {
            let used = c.limit();
            c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 8.0)]));
        }
        let grown = c.limit();
        assert!(grown > FLOOR, "grows while both sides keep up: {grown}");
        // Now PUTs take twice their base (they queue at the destination); GETs do not.
        for _ in 0..30 {
            let used = c.limit();
            c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 16.0)]));
        }
        assert_eq!(c.limit(), grown, "holds: neither grows nor shrinks");
        // The queue drains: growth resumes.
        let used = c.limit();
        c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 9.0)]));
        assert!(c.limit() > grown);
    }

    #[test]
    fn puts_are_judged_against_their_own_size_class() {
        let mut c = Controller::new(512);
        // Small PUTs at 6 ms, 64 MiB ones at 300 ms: each at its own base.
        let used = c.limit();
        c.tick(with_puts(
            sample(100, 5.0, used),
            &[(50, 4096, 6.0), (10, 64 << 20, 300.0)],
        ));
        // Ticks of mostly large blocks: a higher mean over all, but no class is slower.
        for _ in 0..20 {
            let used = c.limit();
            c.tick(with_puts(
                sample(100, 5.0, used),
                &[(5, 4096, 6.0), (40, 64 << 20, 300.0)],
            ));
        }
        assert_eq!(c.limit(), 512, "grew all the way");
    }

    #[test]
    fn a_put_base_is_forgotten_after_half_a_minute() {
        let mut c = Controller::new(4096);
        let used = c.limit();
        c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 8.0)]));
        // The destination got slower for good: PUTs at 20 ms.
        for _ in 0..BASE_TICKS {
            let used = c.limit();
            c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 20.0)]));
        }
        let held = c.limit();
        let used = c.limit();
        c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 20.0)]));
        c.tick(with_puts(
            sample(100, 5.0, c.limit()),
            &[(100, 1 << 20, 20.0)],
        ));
        assert!(
            c.limit() > held,
            "20 ms is the new base: {held} -> {}",
            c.limit()
        );
    }

    #[test]
    fn too_few_puts_say_nothing() {
        let mut c = Controller::new(512);
        let used = c.limit();
        c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, 8.0)]));
        let before = c.limit();
        let used = c.limit();
        c.tick(with_puts(sample(100, 5.0, used), &[(3, 1 << 20, 80.0)]));
        assert!(c.limit() > before);
    }

    #[test]
    fn grows_while_latency_stays_at_its_base_and_the_window_is_used() {
        let mut c = Controller::new(512);
        assert_eq!(c.limit(), FLOOR);
        let mut last = c.limit();
        for _ in 0..30 {
            let limit = c.tick(sample(100, 5.0, last));
            assert!(limit >= last);
            last = limit;
        }
        assert_eq!(
            last, 512,
            "a constant 5 ms with every slot used grows to the ceiling"
        );
    }

    #[test]
    fn does_not_grow_an_unused_window() {
        let mut c = Controller::new(512);
        for _ in 0..30 {
            // Memory or the gates hold blocks in flight at 16.
            c.tick(sample(100, 5.0, 16));
        }
        assert_eq!(c.limit(), FLOOR);
    }

    #[test]
    fn shrinks_when_requests_queue_and_holds_in_between() {
        let mut c = Controller::new(512);
        for _ in 0..12 {
            let used = c.limit();
            c.tick(sample(100, 5.0, used));
        }
        let grown = c.limit();
        assert!(grown > 200);
        // Latency triples: the extra blocks only queue.
        let shrunk = c.tick(sample(100, 15.0, grown));
        assert!(shrunk < grown);
        // Twice the base: neither grows nor shrinks.
        assert_eq!(c.tick(sample(100, 10.0, shrunk)), shrunk);
        for _ in 0..100 {
            c.tick(sample(100, 50.0, 512));
        }
        assert_eq!(c.limit(), FLOOR, "never below the floor");
        // Half a minute later the slower network is the new base, and the window grows.
        for _ in 0..300 {
            c.tick(sample(100, 50.0, 512));
        }
        assert!(c.limit() > FLOOR);
    }

    #[test]
    fn too_few_heads_change_nothing() {
        let mut c = Controller::new(512);
        assert_eq!(c.tick(sample(3, 0.1, 32)), FLOOR);
        assert_eq!(
            Controller::new(8).limit(),
            8,
            "a ceiling under the floor wins"
        );
    }

    #[test]
    fn bandwidth_keeps_each_transfer_over_twice_the_minimum_rate() {
        assert_eq!(bandwidth_cap(0, 65536, 1), None);
        assert_eq!(bandwidth_cap(10 << 20, 0, 1), None);
        assert_eq!(bandwidth_cap(10 << 20, 64 << 10, 1), Some(80));
        assert_eq!(bandwidth_cap(10 << 20, 64 << 10, 2), Some(40));
        assert_eq!(bandwidth_cap(1 << 10, 64 << 10, 1), Some(1));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn slots_wait_for_a_larger_window_and_close_releases_waiters() {
        block_on(async {
            let window = Window::new(1);
            let first = window.enter().await.expect("a slot");
            let work = first.working();
            let waiting = compio::runtime::spawn({
                let window = window.clone();
                async move { window.enter().await.is_some() }
            });
            compio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(window.take_peak(), 1);
            window.set_limit(2);
            assert!(
                waiting.await.expect("task"),
                "a grown window lets the waiter in"
            );
            drop(work);
            assert_eq!(window.take_peak(), 1, "the peak since the last look");
            assert_eq!(window.take_peak(), 0);
            drop(first);
            let window2 = Window::new(1);
            let _held = window2.enter().await;
            let blocked = compio::runtime::spawn({
                let window2 = window2.clone();
                async move { window2.enter().await.is_none() }
            });
            compio::time::sleep(Duration::from_millis(10)).await;
            window2.close();
            assert!(blocked.await.expect("task"), "closing answers None");
        });
    }
}
