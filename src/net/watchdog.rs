//! Deadlines for socket reads and writes without a timer per operation. Every read and write
//! of a connection is bounded by a timeout (first byte, idle, minimum rate), and most of them
//! finish in microseconds. A compio timer per operation (a clock read, a heap insert and a
//! cancel, plus a cancel token) cost about 4% of keepmover's CPU on 4 KiB blocks. Instead,
//! each operation registers its deadline here, and one watchdog task per runtime (one per
//! worker thread) wakes every [`TICK`] while any operation is registered, and shuts down the
//! socket of each one that is overdue (which ends the pending operation: see
//! `conn::run_until`).
//!
//! A deadline counts from the clock when its operation registers, never from the
//! watchdog's last tick: a busy event loop (sealing a 20 MiB TLS body in a debug build)
//! can leave that tick far behind, and a deadline taken from it fired early (a CI failure,
//! and the regression test `a_stale_tick_does_not_make_a_deadline_early`). So one fires
//! at most a tick late, plus however long the event loop is busy, and never early.
//! Timeouts are whole seconds in practice (the shortest flag value tests use is 100 ms).
//!
//! There is one watchdog per runtime, not per thread: a thread may keep a runtime that is not
//! being driven (say, one used for discovery) while another runs, and a watchdog in the idle
//! one would never look at the running one's deadlines.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use compio::net::TcpStream;

/// How often the watchdog looks at the registered deadlines; also how late one may fire.
const TICK: Duration = Duration::from_millis(25);

#[derive(Default)]
struct Deadlines {
    operations: slab::Slab<Operation>,
    /// The runtimes whose watchdog is running.
    watchdogs: Vec<RuntimeId>,
}

struct Operation {
    deadline: Instant,
    /// A handle on the operation's socket (shared, not a second descriptor).
    socket: TcpStream,
    fired: bool,
    runtime: RuntimeId,
}

/// The runtime being driven on this thread, by the address `block_on` runs it from. A
/// runtime moved between two `block_on`s gets a second watchdog (harmless: the first one
/// ends once its operations are gone), and an address reused by a later runtime is free
/// again, because a runtime's watchdog is dropped with it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RuntimeId(usize);

impl RuntimeId {
    fn current() -> RuntimeId {
        compio::runtime::Runtime::with_current(|runtime| {
            RuntimeId(std::ptr::from_ref(runtime) as usize)
        })
    }
}

thread_local! {
    static DEADLINES: RefCell<Deadlines> = RefCell::new(Deadlines::default());
}

/// One registered operation; unregisters on drop.
pub(crate) struct Watch {
    key: usize,
}

impl Watch {
    /// [`Watch::until`] `timeout` from now.
    #[cfg(test)]
    pub(crate) fn new(socket: &TcpStream, timeout: Duration) -> Watch {
        Watch::until(socket, Instant::now() + timeout)
    }

    /// Registers an operation on `socket` that must end by `deadline`. Starts the current
    /// runtime's watchdog task if none is running (panics outside a compio runtime).
    pub(crate) fn until(socket: &TcpStream, deadline: Instant) -> Watch {
        let runtime = RuntimeId::current();
        DEADLINES.with(|deadlines| {
            let mut deadlines = deadlines.borrow_mut();
            if !deadlines.watchdogs.contains(&runtime) {
                deadlines.watchdogs.push(runtime);
                compio::runtime::spawn(watch_deadlines(runtime)).detach();
            }
            let key = deadlines.operations.insert(Operation {
                deadline,
                socket: socket.clone(),
                fired: false,
                runtime,
            });
            Watch { key }
        })
    }

    /// Whether the deadline passed and the socket was shut down.
    pub(crate) fn fired(&self) -> bool {
        DEADLINES.with(|deadlines| {
            deadlines
                .borrow()
                .operations
                .get(self.key)
                .is_some_and(|operation| operation.fired)
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // `try_with`: a thread's locals may already be gone while its last tasks drop.
        let _ = DEADLINES.try_with(|deadlines| {
            deadlines.borrow_mut().operations.try_remove(self.key);
        });
    }
}

/// Marks a runtime's watchdog stopped when its task ends or is dropped (say, with its
/// runtime), so the next registration there starts a new one.
struct Ticking(RuntimeId);

impl Drop for Ticking {
    fn drop(&mut self) {
        let _ = DEADLINES.try_with(|deadlines| {
            deadlines.borrow_mut().watchdogs.retain(|id| *id != self.0);
        });
    }
}

/// Every tick: shuts down the socket of each overdue operation (its own runtime's or not:
/// shutting a socket down works from anywhere); ends when its runtime has none left.
async fn watch_deadlines(runtime: RuntimeId) {
    let _ticking = Ticking(runtime);
    loop {
        compio::time::sleep(TICK).await;
        let now = Instant::now();
        let idle = DEADLINES.with(|deadlines| {
            let mut deadlines = deadlines.borrow_mut();
            let mut own = false;
            for (_, operation) in deadlines.operations.iter_mut() {
                own |= operation.runtime == runtime;
                if !operation.fired && operation.deadline <= now {
                    operation.fired = true;
                    shut_down(&operation.socket);
                }
            }
            !own
        });
        if idle {
            return;
        }
    }
}

/// Ends every pending operation on `socket` by shutting it down in both directions. Errors
/// (say, already disconnected) mean nothing is pending.
fn shut_down(socket: &TcpStream) {
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use compio::io::AsyncRead;

    /// A connection on loopback: our end, and the peer's.
    async fn connected() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        (stream, peer)
    }

    /// A read from a silent peer under `timeout`: whether the deadline fired, and how long the
    /// read took.
    async fn silent_read(timeout: Duration) -> (bool, Duration) {
        let (stream, peer) = connected().await;
        // Silent for 5 s, then closed: a deadline that never fires fails the test instead
        // of hanging it.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            drop(peer);
        });
        watched_read(&stream, timeout).await
    }

    /// One read on `stream` under `timeout`: whether the deadline fired, and how long the
    /// read took.
    async fn watched_read(stream: &TcpStream, timeout: Duration) -> (bool, Duration) {
        let started = Instant::now();
        let watch = Watch::new(stream, timeout);
        let mut reader = stream;
        let _ = reader.read(Vec::with_capacity(4096)).await;
        (watch.fired(), started.elapsed())
    }

    /// The watchdog task dies with its runtime (here, while sleeping, with a deadline that
    /// was never due): the next runtime on the thread must start its own, or its deadlines
    /// would never fire and a stalled read would hang.
    #[test]
    fn deadlines_fire_in_one_runtime_after_another() {
        let runtime = compio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let (stream, _peer) = connected().await;
            let _watch = Watch::new(&stream, Duration::from_secs(60));
        });
        drop(runtime);
        for _ in 0..2 {
            let runtime = compio::runtime::Runtime::new().expect("runtime");
            let (fired, took) = runtime.block_on(silent_read(Duration::from_millis(50)));
            assert!(fired);
            assert!(took >= Duration::from_millis(50), "never early: {took:?}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
    }

    /// Two runtimes alive on one thread, the first not driven while the second runs: the
    /// second's deadline must not wait for the first's watchdog (which cannot tick).
    #[test]
    fn a_runtime_that_is_not_driven_does_not_hold_up_another() {
        let idle = compio::runtime::Runtime::new().expect("runtime");
        let (stream, _peer, _watch) = idle.block_on(async {
            let (stream, peer) = connected().await;
            // Registered and still pending when block_on returns: the watchdog stays alive.
            let watch = Watch::new(&stream, Duration::from_secs(60));
            (stream, peer, watch)
        });
        let running = compio::runtime::Runtime::new().expect("runtime");
        let (fired, took) = running.block_on(silent_read(Duration::from_millis(50)));
        assert!(fired, "took {took:?}");
        drop((stream, idle));
    }

    /// The event loop blocked (here, the thread asleep) while the watchdog runs: its last
    /// tick is 300 ms old when the next operation registers. A deadline taken from that tick
    /// fired at once; it must count from the registration.
    #[test]
    fn a_stale_tick_does_not_make_a_deadline_early() {
        let runtime = compio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let (other, _other_peer) = connected().await;
            let _running = Watch::new(&other, Duration::from_secs(60));
            let (stream, _silent_peer) = connected().await;
            compio::time::sleep(TICK * 2).await;
            std::thread::sleep(Duration::from_millis(300));
            // Registered before the watchdog gets another turn.
            let (fired, took) = watched_read(&stream, Duration::from_millis(200)).await;
            assert!(fired);
            assert!(took >= Duration::from_millis(200), "early: {took:?}");
        });
    }

    #[test]
    fn an_operation_that_ends_in_time_is_not_fired() {
        let runtime = compio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let (stream, mut peer) = connected().await;
            std::io::Write::write_all(&mut peer, b"hello").expect("write");
            let watch = Watch::new(&stream, Duration::from_millis(50));
            let mut reader = &stream;
            let compio::BufResult(result, _) = reader.read(Vec::with_capacity(16)).await;
            assert_eq!(result.expect("read"), 5);
            // Past the deadline, but the operation already ended and unregistered.
            drop(watch);
            compio::time::sleep(Duration::from_millis(100)).await;
            let watch = Watch::new(&stream, Duration::from_secs(60));
            assert!(!watch.fired());
        });
    }
}
