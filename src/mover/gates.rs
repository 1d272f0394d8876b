//! Load manners per server: at most a fixed number of requests in flight to one server from
//! one worker (so connections per server are bounded), and fewer while it says it is
//! overloaded. keepstore answers 503 without Retry-After once 64 requests run and 128 wait;
//! a 503, 429 or 408 halves that server's allowance, and each success grows it back by about
//! one per allowance's worth of successes (additive increase, multiplicative decrease).
//!
//! One `Gates` per worker thread (single-threaded: `RefCell` and wakers, no locks). Every
//! request passes through here, so the gates also gather what the worker's window
//! controller steers by: GET head latencies and PUT times (see `window`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::window::PutTimes;

#[derive(Debug)]
struct Gate {
    limit: f64,
    in_use: usize,
    waiters: VecDeque<Waker>,
}

impl Gate {
    /// Takes a place if the allowance has one.
    fn take_place(&mut self) -> bool {
        let room = self.in_use < (self.limit as usize).max(1);
        if room {
            self.in_use += 1;
        }
        room
    }
}

/// The gates of every server of both clusters, by [`Key`].
#[derive(Debug)]
pub struct Gates {
    gates: RefCell<Vec<Gate>>,
    src_count: usize,
    cap: usize,
    /// GET response heads since the worker's window controller last looked: how many, and
    /// their latencies added up (its signal of queueing at the servers; see `window`).
    heads: Cell<(u32, Duration)>,
    /// PUTs since then: the successful ones' times by size class, and how many failed on
    /// overload or a timeout (its signal of a destination that queues).
    puts: RefCell<PutTimes>,
}

/// Which server: source or destination, and its index in that cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Src(usize),
    Dst(usize),
}

/// One request's place at a gate; frees it on drop.
pub struct Permit {
    gates: Rc<Gates>,
    index: usize,
    /// Whether the lane had to wait for it.
    waited: bool,
}

impl Permit {
    /// When the request behind this permit begins: `asked` (when the lane asked for the
    /// gate) if it did not have to wait, else now. Saves a clock read per request in the
    /// common case; on this VM a read costs about 50 ns, and a 4 KiB block made 24.
    pub fn began(&self, asked: std::time::Instant) -> std::time::Instant {
        if self.waited {
            std::time::Instant::now()
        } else {
            asked
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut gates = self.gates.gates.borrow_mut();
        if let Some(gate) = gates.get_mut(self.index) {
            gate.in_use = gate.in_use.saturating_sub(1);
            if let Some(waker) = gate.waiters.pop_front() {
                waker.wake();
            }
        }
    }
}

impl Gates {
    /// `cap`: most requests in flight to one server from this worker (at least 1).
    pub fn new(src_servers: usize, dst_servers: usize, cap: usize) -> Rc<Gates> {
        let cap = cap.max(1);
        Rc::new(Gates {
            gates: RefCell::new(
                (0..src_servers + dst_servers)
                    .map(|_| Gate {
                        limit: cap as f64,
                        in_use: 0,
                        waiters: VecDeque::new(),
                    })
                    .collect(),
            ),
            src_count: src_servers,
            cap,
            heads: Cell::new((0, Duration::ZERO)),
            puts: RefCell::new(PutTimes::default()),
        })
    }

    /// A GET's response head arrived `latency` after it asked for its server's gate.
    pub fn record_head(&self, latency: Duration) {
        let (count, total) = self.heads.get();
        self.heads
            .set((count.saturating_add(1), total.saturating_add(latency)));
    }

    /// The heads recorded since the last call: (count, latencies added up).
    pub fn take_heads(&self) -> (u32, Duration) {
        self.heads.replace((0, Duration::ZERO))
    }

    /// A PUT of `size` bytes succeeded `latency` after it asked for its server's gate.
    pub fn record_put(&self, size: u64, latency: Duration) {
        self.puts.borrow_mut().record(size, latency);
    }

    /// A PUT failed on overload (503, 429, 408) or a timeout.
    pub fn record_put_trouble(&self) {
        self.puts.borrow_mut().record_trouble();
    }

    /// The PUTs recorded since the last call.
    pub fn take_puts(&self) -> PutTimes {
        self.puts.take()
    }

    fn index(&self, key: Key) -> usize {
        match key {
            Key::Src(i) => i,
            Key::Dst(i) => self.src_count + i,
        }
    }

    /// Waits for a place at the server's gate.
    pub async fn enter(self: &Rc<Self>, key: Key) -> Permit {
        let index = self.index(key);
        let mut waited = false;
        poll_fn(|cx| {
            let mut gates = self.gates.borrow_mut();
            let Some(gate) = gates.get_mut(index) else {
                return Poll::Ready(());
            };
            if gate.take_place() {
                Poll::Ready(())
            } else {
                gate.waiters.push_back(cx.waker().clone());
                waited = true;
                Poll::Pending
            }
        })
        .await;
        Permit {
            gates: self.clone(),
            index,
            waited,
        }
    }

    /// A place at the server's gate if it has room now (none waits for one).
    pub fn try_enter(self: &Rc<Self>, key: Key) -> Option<Permit> {
        let index = self.index(key);
        if let Some(gate) = self.gates.borrow_mut().get_mut(index) {
            if !gate.take_place() {
                return None;
            }
        }
        Some(Permit {
            gates: self.clone(),
            index,
            waited: false,
        })
    }

    /// The server answered normally.
    pub fn success(&self, key: Key) {
        let index = self.index(key);
        let mut gates = self.gates.borrow_mut();
        if let Some(gate) = gates.get_mut(index) {
            let grown = (gate.limit + 1.0 / gate.limit).min(self.cap as f64);
            let opened = grown as usize > gate.limit as usize;
            gate.limit = grown;
            if opened {
                if let Some(waker) = gate.waiters.pop_front() {
                    waker.wake();
                }
            }
        }
    }

    /// The server said it is overloaded.
    pub fn overloaded(&self, key: Key) {
        let index = self.index(key);
        let mut gates = self.gates.borrow_mut();
        if let Some(gate) = gates.get_mut(index) {
            gate.limit = (gate.limit / 2.0).max(1.0);
        }
    }

    /// The current allowance of a server.
    pub fn limit(&self, key: Key) -> usize {
        let index = self.index(key);
        self.gates
            .borrow()
            .get(index)
            .map_or(0, |g| (g.limit as usize).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_halves_and_success_regrows() {
        let gates = Gates::new(1, 1, 16);
        assert_eq!(gates.limit(Key::Dst(0)), 16);
        gates.overloaded(Key::Dst(0));
        gates.overloaded(Key::Dst(0));
        assert_eq!(gates.limit(Key::Dst(0)), 4);
        assert_eq!(gates.limit(Key::Src(0)), 16, "other servers unaffected");
        for _ in 0..4 {
            gates.success(Key::Dst(0));
        }
        assert_eq!(gates.limit(Key::Dst(0)), 4, "about one more per window");
        for _ in 0..200 {
            gates.success(Key::Dst(0));
        }
        assert_eq!(gates.limit(Key::Dst(0)), 16, "capped");
        for _ in 0..10 {
            gates.overloaded(Key::Dst(0));
        }
        assert_eq!(gates.limit(Key::Dst(0)), 1, "never below one");
    }

    #[test]
    fn requests_wait_for_a_place() {
        let (runtime, _) = crate::net::build_runtime(crate::net::IoBackend::Auto).expect("runtime");
        runtime.block_on(async {
            let gates = Gates::new(1, 0, 1);
            let first = gates.enter(Key::Src(0)).await;
            let order = Rc::new(RefCell::new(Vec::new()));
            let (g, o) = (gates.clone(), order.clone());
            let waiter = compio::runtime::spawn(async move {
                let _p = g.enter(Key::Src(0)).await;
                o.borrow_mut().push("second");
            });
            compio::time::sleep(std::time::Duration::from_millis(5)).await;
            order.borrow_mut().push("first done");
            drop(first);
            let _ = waiter.await;
            assert_eq!(*order.borrow(), vec!["first done", "second"]);
        });
    }
}
