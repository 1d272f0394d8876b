//! How many blocks one worker keeps in flight: as many as the servers' latency calls for,
//! and no more. Blocks in flight cost CPU even while they wait (connections, timers, buffers
//! touched, cache misses): on loopback 4 KiB blocks cost 26 µs each at 32 in flight and 37 µs
//! at 512. Across a real network, 5 ms each way, 32 in flight cap a worker at about 3 000
//! small blocks a second. So the number adapts (Little's law: blocks in flight = rate ×
//! latency), in the manner of TCP Vegas:
//!
//! * the signal is the time from a GET asking for its server's gate to its response head,
//!   which is the source's latency plus whatever queueing keepmover's own requests cause
//!   there (and at the gate, and on keepmover's event loop);
//! * its floor (`base`) is the lowest tick mean since the window last went back to its
//!   floor (below);
//! * while the tick's mean stays near the base, more blocks in flight bring more throughput,
//!   so the window grows (by a quarter per tick); once it climbs well above the base, the
//!   extra blocks only queue, so the window shrinks (by an eighth);
//! * it only grows while it is used: memory (64 MiB blocks fill a 1 GiB budget at 16), the
//!   per-server gates or an empty queue may bind first, and then there is nothing to learn;
//! * and it only grows while the destination keeps up: a GET's head says nothing of a
//!   destination whose PUTs queue (a keepstore busy checking MD5s or writing to slow disks),
//!   and there more blocks in flight only wait for their PUTs, each holding its buffer. So
//!   the time from a PUT's gate to its answer (the signed locator) is a second signal, which
//!   can stop growth but never shrinks the window. A PUT's time includes its body's transfer, so it is
//!   judged against the base of its own size class (powers of two), and only in a tick with
//!   enough PUTs of that class: a tick with more large blocks than the last is not queueing.
//!   A PUT that failed on overload or a timeout stops growth for its tick;
//! * every 30 seconds of the wall clock the window goes back to its floor, and once the
//!   blocks in flight have drained to it, both bases are measured afresh (BBR's ProbeRTT).
//!   Every worker, and every keepmover process sharing the servers (`-shard` across hosts,
//!   whose clocks agree within milliseconds), backs off in the same moment: one that kept
//!   its blocks in flight would keep the queue the others are measuring without. While the rule holds a
//!   window whose blocks queue, every latency it sees is a queued one: a base that simply
//!   forgot its old minimum would take one of those, and the window would creep up by half
//!   again every time it forgot. The price is a short dip every 30 seconds.
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

/// Time between two re-measurements of the bases, on the wall clock: often enough to follow
/// a network that really got slower (or faster), rarely enough that the dip costs little.
pub const REMEASURE_EVERY: Duration = Duration::from_secs(30);

/// Which re-measuring period a wall-clock time (since the Unix epoch) falls in: the
/// controller re-measures when it changes.
pub fn remeasure_period(since_unix_epoch: Duration) -> u64 {
    since_unix_epoch.as_secs() / REMEASURE_EVERY.as_secs()
}

/// Longest wait, in ticks, for the blocks in flight to drain to the floor before the bases
/// are measured anyway (a block stuck on a stalled server must not hold the window down).
const DRAIN_TICKS: u32 = 20;

/// Heads (or PUTs of one size class) needed in a tick for their mean to mean something.
const MIN_HEADS: u32 = 8;

/// Grow while the mean head latency (and each judged PUT class's) is under this multiple of
/// its base.
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
    /// PUTs that ended, with their latencies.
    pub puts: PutTimes,
    /// Most blocks worked on at once.
    pub peak_busy: usize,
    /// A new [`remeasure_period`] began.
    pub remeasure: bool,
}

/// The PUTs of one tick: the successful ones by size class (how many, and their latencies
/// from asking for the server's gate to the end of its answer, added up), and how many failed
/// on overload or a timeout.
#[derive(Clone, Copy, Debug)]
pub struct PutTimes {
    classes: [(u32, Duration); SIZE_CLASSES],
    troubled: u32,
}

impl Default for PutTimes {
    fn default() -> Self {
        PutTimes {
            classes: [(0, Duration::ZERO); SIZE_CLASSES],
            troubled: 0,
        }
    }
}

impl PutTimes {
    /// A PUT of `size` bytes succeeded after `latency`.
    pub fn record(&mut self, size: u64, latency: Duration) {
        let class = (size.max(1).ilog2() as usize).min(SIZE_CLASSES - 1);
        let (count, total) = &mut self.classes[class];
        *count = count.saturating_add(1);
        *total = total.saturating_add(latency);
    }

    /// A PUT failed on overload (503, 429, 408) or a timeout.
    pub fn record_trouble(&mut self) {
        self.troubled = self.troubled.saturating_add(1);
    }
}

/// The adaptive rule (see the module comment).
#[derive(Debug)]
pub struct Controller {
    limit: usize,
    ceiling: usize,
    /// The lowest tick mean of head latency since the last re-measurement, in seconds.
    head_base: f64,
    /// The same for each PUT size class (infinite: not seen yet).
    put_bases: [f64; SIZE_CLASSES],
    /// Ticks spent waiting for the blocks in flight to drain to the floor, while re-measuring.
    draining: Option<u32>,
}

impl Controller {
    /// Starts at [`FLOOR`] (or the ceiling, if lower).
    pub fn new(ceiling: usize) -> Controller {
        let ceiling = ceiling.max(1);
        Controller {
            limit: FLOOR.min(ceiling),
            ceiling,
            head_base: f64::INFINITY,
            put_bases: [f64::INFINITY; SIZE_CLASSES],
            draining: None,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One tick: returns the new window.
    pub fn tick(&mut self, sample: Sample) -> usize {
        let floor = FLOOR.min(self.ceiling);
        if sample.remeasure {
            // Back to the floor; the bases are forgotten once the blocks in flight drained.
            self.limit = self.limit.min(floor);
            self.draining = Some(0);
            return self.limit;
        }
        if let Some(waited) = self.draining {
            if sample.peak_busy > self.limit && waited < DRAIN_TICKS {
                self.draining = Some(waited + 1);
                return self.limit;
            }
            self.draining = None;
            self.head_base = f64::INFINITY;
            self.put_bases = [f64::INFINITY; SIZE_CLASSES];
        }
        let puts_queue = self.put_queueing(&sample.puts);
        if sample.heads < MIN_HEADS {
            return self.limit;
        }
        let mean = sample.head_latency.as_secs_f64() / f64::from(sample.heads);
        self.head_base = self.head_base.min(mean);
        let base = self.head_base;
        if mean > base * SHRINK_ABOVE {
            self.limit = (self.limit - (self.limit / 8).max(1)).max(floor);
        } else if mean < base * GROW_BELOW && !puts_queue && sample.peak_busy * 4 >= self.limit * 3
        {
            // Used (at least three quarters of it) and not queueing: more may help.
            self.limit = (self.limit + (self.limit / 4).max(4)).min(self.ceiling);
        }
        self.limit
    }

    /// Updates the base of each PUT size class with enough PUTs in this tick
    /// ([`MIN_HEADS`]), and tells whether the PUTs queue: their time over their class's base,
    /// averaged over the judged PUTs, is at [`GROW_BELOW`] or more, or a PUT failed on
    /// overload or a timeout. No judged class (a source-only job, large blocks a few a tick)
    /// says nothing.
    fn put_queueing(&mut self, puts: &PutTimes) -> bool {
        let mut judged = 0u32;
        let mut weighted = 0.0;
        for (&(count, total), base) in puts.classes.iter().zip(self.put_bases.iter_mut()) {
            if count < MIN_HEADS {
                continue;
            }
            let mean = total.as_secs_f64() / f64::from(count);
            *base = base.min(mean);
            judged += count;
            weighted += f64::from(count) * if *base > 0.0 { mean / *base } else { 1.0 };
        }
        puts.troubled > 0 || (judged > 0 && weighted / f64::from(judged) >= GROW_BELOW)
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

    /// Ticks in a [`REMEASURE_EVERY`].
    const TICKS_PER_REMEASURE: usize = 300;

    fn remeasuring(sample: Sample) -> Sample {
        Sample {
            remeasure: true,
            ..sample
        }
    }

    /// A tick with the window used, GETs at their 5 ms base, and 100 PUTs of 1 MiB taking
    /// `put_ms` each.
    fn tick_with_puts_of(c: &mut Controller, put_ms: f64) -> usize {
        let used = c.limit();
        c.tick(with_puts(sample(100, 5.0, used), &[(100, 1 << 20, put_ms)]))
    }

    #[test]
    fn the_wall_clock_sets_the_remeasuring_periods() {
        assert_eq!(
            REMEASURE_EVERY.as_millis(),
            TICK.as_millis() * TICKS_PER_REMEASURE as u128
        );
        assert_eq!(remeasure_period(Duration::from_secs(29)), 0);
        assert_eq!(remeasure_period(Duration::from_secs(30)), 1);
        assert_eq!(
            remeasure_period(Duration::from_millis(1_764_600_059_999)),
            58_820_001
        );
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
            tick_with_puts_of(&mut c, 8.0);
        }
        let grown = c.limit();
        assert!(grown > FLOOR, "grows while both sides keep up: {grown}");
        // Now PUTs take twice their base (they queue at the destination); GETs do not.
        for _ in 0..30 {
            tick_with_puts_of(&mut c, 16.0);
        }
        assert_eq!(c.limit(), grown, "holds: neither grows nor shrinks");
        // The queue drains: growth resumes.
        tick_with_puts_of(&mut c, 9.0);
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
    fn every_half_minute_the_window_drains_to_the_floor_and_the_bases_are_measured_again() {
        let mut c = Controller::new(4096);
        tick_with_puts_of(&mut c, 8.0);
        let grown = c.limit();
        assert!(grown > FLOOR);
        // The destination got slower for good: PUTs at 20 ms, and the window holds.
        for _ in 1..TICKS_PER_REMEASURE {
            tick_with_puts_of(&mut c, 20.0);
            assert_eq!(c.limit(), grown, "held");
        }
        let used = c.limit();
        c.tick(remeasuring(with_puts(
            sample(100, 5.0, used),
            &[(100, 1 << 20, 20.0)],
        )));
        assert_eq!(c.limit(), FLOOR, "back to the floor");
        // Blocks still in flight above the floor: nothing is learnt until they drain.
        c.tick(with_puts(sample(100, 50.0, grown), &[(100, 1 << 20, 90.0)]));
        assert_eq!(c.limit(), FLOOR);
        // Drained: 20 ms is the new base, and the window grows again.
        c.tick(with_puts(sample(100, 5.0, FLOOR), &[(100, 1 << 20, 20.0)]));
        assert!(c.limit() > FLOOR);
        let before = c.limit();
        tick_with_puts_of(&mut c, 21.0);
        assert!(
            c.limit() > before,
            "21 ms is not queueing over a 20 ms base"
        );
    }

    #[test]
    fn a_drain_that_does_not_end_is_given_up() {
        let mut c = Controller::new(512);
        for _ in 0..10 {
            c.tick(sample(100, 5.0, c.limit()));
        }
        assert!(c.limit() > FLOOR);
        c.tick(remeasuring(sample(100, 5.0, c.limit())));
        assert_eq!(c.limit(), FLOOR);
        // A block stuck on a stalled server keeps the window over-full.
        for _ in 0..DRAIN_TICKS {
            c.tick(sample(100, 5.0, FLOOR + 1));
        }
        assert_eq!(c.limit(), FLOOR);
        c.tick(sample(100, 5.0, FLOOR + 1));
        assert!(c.limit() > FLOOR, "measured anyway, and grows");
    }

    /// A server that is the bottleneck: every block it holds waits its turn, so its latency
    /// is the window over its rate (Little's law), however long the rule holds.
    fn run_against_a_bottleneck(c: &mut Controller, put_bound: bool, ticks: usize) -> usize {
        let per_ms = 0.5; // blocks the bottleneck serves per millisecond
        let mut highest = 0;
        for tick in 1..=ticks {
            let limit = c.limit();
            let queued_ms = limit as f64 / per_ms;
            let mut seen = if put_bound {
                with_puts(sample(100, 5.0, limit), &[(100, 1 << 20, queued_ms)])
            } else {
                sample(100, queued_ms, limit)
            };
            seen.remeasure = tick % TICKS_PER_REMEASURE == 0;
            let next = c.tick(seen);
            highest = highest.max(next);
        }
        highest
    }

    #[test]
    fn a_window_held_by_queueing_puts_does_not_creep_up() {
        let mut c = Controller::new(4096);
        // Ten minutes. Before re-measuring, the base aged out to a queued latency every
        // 30 s and the window grew by half again each time, to the ceiling.
        let highest = run_against_a_bottleneck(&mut c, true, 6000);
        assert!(highest <= 64, "crept up to {highest}");
    }

    #[test]
    fn a_window_held_by_queueing_gets_does_not_creep_up() {
        let mut c = Controller::new(4096);
        let highest = run_against_a_bottleneck(&mut c, false, 6000);
        assert!(highest <= 64, "crept up to {highest}");
    }

    #[test]
    fn a_put_that_fails_on_overload_stops_growth_for_its_tick() {
        let mut c = Controller::new(512);
        let mut troubled = sample(100, 5.0, FLOOR);
        troubled.puts.record_trouble();
        assert_eq!(c.tick(troubled), FLOOR);
        assert!(c.tick(sample(100, 5.0, FLOOR)) > FLOOR);
    }

    #[test]
    fn too_few_puts_say_nothing() {
        let mut c = Controller::new(512);
        tick_with_puts_of(&mut c, 8.0);
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
        // At the next re-measuring the slower network is the new base, and the window grows.
        for _ in 0..300 {
            c.tick(sample(100, 50.0, 512));
        }
        assert_eq!(c.limit(), FLOOR, "no re-measuring, no new base");
        c.tick(remeasuring(sample(100, 50.0, FLOOR)));
        c.tick(sample(100, 50.0, FLOOR));
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
