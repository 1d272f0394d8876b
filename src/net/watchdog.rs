//! Deadlines for socket reads and writes without a timer per operation. Every read and write
//! of a connection is bounded by a timeout (first byte, idle, minimum rate), and most of them
//! finish in microseconds. A compio timer per operation (a clock read, a heap insert and a
//! cancel, plus a cancel token) cost about 4% of keepmover's CPU on 4 KiB blocks. Instead,
//! each operation registers its deadline here, and one watchdog task per worker thread
//! wakes every [`TICK`] while any operation is registered, and shuts down the socket of each
//! one that is overdue (which ends the pending operation: see `conn::run_with_timeout`).
//!
//! A deadline is taken from the watchdog's last tick plus one tick, so it never fires early
//! and fires at most two ticks late. Timeouts are whole seconds in practice (the shortest
//! flag value tests use is 100 ms).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use compio::net::TcpStream;

/// How often the watchdog looks at the registered deadlines; also how late one may fire.
pub(crate) const TICK: Duration = Duration::from_millis(25);

#[derive(Default)]
struct Deadlines {
    operations: slab::Slab<Operation>,
    /// The last tick's clock reading, while a watchdog task is running.
    ticking: Option<Instant>,
}

struct Operation {
    deadline: Instant,
    /// A handle on the operation's socket (shared, not a second descriptor).
    socket: TcpStream,
    fired: bool,
}

thread_local! {
    static DEADLINES: RefCell<Deadlines> = RefCell::new(Deadlines::default());
}

/// One registered operation; unregisters on drop.
pub(crate) struct Watch {
    key: usize,
}

impl Watch {
    /// Registers an operation on `socket` that must end within `timeout`. Starts this
    /// thread's watchdog task if none is running (needs a compio runtime).
    pub(crate) fn new(socket: &TcpStream, timeout: Duration) -> Watch {
        DEADLINES.with(|deadlines| {
            let mut deadlines = deadlines.borrow_mut();
            let deadline = match deadlines.ticking {
                Some(last_tick) => last_tick + TICK + timeout,
                None => {
                    let now = Instant::now();
                    deadlines.ticking = Some(now);
                    compio::runtime::spawn(watch_deadlines()).detach();
                    now + timeout
                }
            };
            let key = deadlines.operations.insert(Operation {
                deadline,
                socket: socket.clone(),
                fired: false,
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

/// Marks the watchdog stopped when its task ends or is dropped (say, with its runtime), so
/// the next registration starts a new one.
struct Ticking;

impl Drop for Ticking {
    fn drop(&mut self) {
        let _ = DEADLINES.try_with(|deadlines| deadlines.borrow_mut().ticking = None);
    }
}

/// Every tick: shuts down the socket of each overdue operation; ends when none is left.
async fn watch_deadlines() {
    let _ticking = Ticking;
    loop {
        compio::time::sleep(TICK).await;
        let now = Instant::now();
        let idle = DEADLINES.with(|deadlines| {
            let mut deadlines = deadlines.borrow_mut();
            deadlines.ticking = Some(now);
            for (_, operation) in deadlines.operations.iter_mut() {
                if !operation.fired && operation.deadline <= now {
                    operation.fired = true;
                    shut_down(&operation.socket);
                }
            }
            deadlines.operations.is_empty()
        });
        if idle {
            return;
        }
    }
}

/// Ends every pending operation on `socket` by shutting it down in both directions. Errors
/// (say, already disconnected) mean nothing is pending.
pub(crate) fn shut_down(socket: &TcpStream) {
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use compio::io::AsyncRead;

    /// A read from a silent peer under `timeout`: whether the deadline fired, and how long the
    /// read took.
    async fn silent_read(timeout: Duration) -> (bool, Duration) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _peer = listener.accept().expect("accept");
        let started = Instant::now();
        let watch = Watch::new(&stream, timeout);
        let mut reader = &stream;
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
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let stream = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
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

    #[test]
    fn an_operation_that_ends_in_time_is_not_fired() {
        let runtime = compio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let stream = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
            let (mut peer, _) = listener.accept().expect("accept");
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
