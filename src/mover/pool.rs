//! Block buffers under a fixed memory budget. A task waits for a buffer instead of
//! allocating, so memory stays flat however many blocks there are. Buffers are reused (a
//! fresh 64 MiB allocation costs page faults and zeroing, which rivals MD5 itself), and a
//! buffer frozen into `Bytes` for the replica fan-out comes back to the pool when the last
//! replica upload drops its clone (`Bytes::from_owner`), with no copy anywhere.
//!
//! The first pool of the process turns transparent huge pages off for it (Linux
//! `PR_SET_THP_DISABLE`). The allocator asks for huge pages on big allocations, and the kernel
//! then zeroes each 2 MiB page in one go on first touch; under KVM that fault costs far more
//! than zeroing the same memory as 4 KiB pages (measured, BENCHMARKS.md: a 1 GiB pool filled
//! in 3.8 s of system time with huge pages, 1.7 s without). The buffers are streamed through
//! once per block, so huge pages buy no TLB win worth that. Once filled, the pool is reused
//! and takes no faults either way.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use bytes::Bytes;

/// Turns transparent huge pages off for this process (see the module comment), once. The
/// binary calls it first thing, so the index walk's memory is in small pages too; the first
/// pool calls it again for library users.
pub fn no_huge_pages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Best effort: an old kernel without the prctl just keeps its huge pages.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    });
}

/// Smallest buffer handed out; smaller blocks share this class.
const MIN_CLASS: usize = 64 << 10;

/// The size class that holds `len` bytes: a power of two, at least [`MIN_CLASS`].
fn class_of(len: usize) -> usize {
    len.max(MIN_CLASS).next_power_of_two()
}

#[derive(Debug, Default)]
struct PoolState {
    /// Bytes of capacity alive: leased plus idle.
    allocated: usize,
    /// Idle buffers, by class (empty, capacity = class).
    idle: Vec<(usize, Vec<u8>)>,
    waiters: Vec<Waker>,
    peak_allocated: usize,
}

/// Bytes leased out now (capacity of buffers held by tasks, not idle ones): a relaxed atomic
/// kept beside the lock so a reader (`/metrics`, the status) never takes the pool's lock.
#[derive(Debug, Default)]
pub struct InUse(AtomicU64);

impl InUse {
    pub fn bytes(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Debug)]
struct PoolInner {
    budget: usize,
    /// Bytes that buffers larger than [`SMALL_CLASS`] may not take (`-order-by mixed`).
    small_reserve: usize,
    state: Mutex<PoolState>,
    in_use: Arc<InUse>,
}

/// Buffers of this class or smaller may use the small blocks' reserve.
pub const SMALL_CLASS: usize = 1 << 20;

/// A memory-budgeted pool of block buffers, shared by all worker threads.
#[derive(Clone, Debug)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

impl BufferPool {
    /// `budget` is in bytes; it must hold at least one buffer of the largest class used.
    pub fn new(budget: usize) -> BufferPool {
        BufferPool::with_options(budget, 0, Arc::new(InUse::default()))
    }

    /// A pool in which `reserve` bytes of the budget are kept for buffers of at most
    /// [`SMALL_CLASS`], so large blocks cannot starve small ones of memory.
    pub fn with_small_reserve(budget: usize, reserve: usize) -> BufferPool {
        BufferPool::with_options(budget, reserve, Arc::new(InUse::default()))
    }

    /// A pool that keeps `in_use` up to date (the engine passes the one its counters show).
    pub fn with_gauge(budget: usize, in_use: Arc<InUse>) -> BufferPool {
        BufferPool::with_options(budget, 0, in_use)
    }

    /// The general form: a small blocks' reserve and a bytes-in-use gauge.
    pub fn with_options(budget: usize, reserve: usize, in_use: Arc<InUse>) -> BufferPool {
        no_huge_pages();
        in_use.0.store(0, Relaxed);
        BufferPool {
            inner: Arc::new(PoolInner {
                budget,
                small_reserve: reserve.min(budget / 2),
                state: Mutex::new(PoolState::default()),
                in_use,
            }),
        }
    }

    pub fn budget(&self) -> usize {
        self.inner.budget
    }

    /// Bytes leased out now; a relaxed load, no lock.
    pub fn in_use(&self) -> u64 {
        self.inner.in_use.bytes()
    }

    /// The most capacity that was ever alive at once (for tests and the memory report).
    pub fn peak_allocated(&self) -> usize {
        self.lock().peak_allocated
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // the numbers are still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a buffer that can hold `len` bytes fits in the budget, then leases it.
    /// Requests larger than the budget are clamped to it (they can still be served alone).
    pub async fn acquire(&self, len: usize) -> BufferLease {
        let class = class_of(len).min(self.inner.budget.max(MIN_CLASS));
        let limit = if class > SMALL_CLASS {
            self.inner.budget - self.inner.small_reserve
        } else {
            self.inner.budget
        };
        let buffer = poll_fn(|cx| {
            let mut state = self.lock();
            if let Some(pos) = state.idle.iter().position(|(c, _)| *c == class) {
                let (_, buf) = state.idle.swap_remove(pos);
                return Poll::Ready(buf);
            }
            // Evict idle buffers of other classes until the new one fits.
            while state.allocated + class > limit && !state.idle.is_empty() {
                if let Some((evicted, _buf)) = state.idle.pop() {
                    state.allocated -= evicted;
                }
            }
            if state.allocated + class <= limit || state.allocated == 0 {
                state.allocated += class;
                state.peak_allocated = state.peak_allocated.max(state.allocated);
                return Poll::Ready(Vec::with_capacity(class));
            }
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
        self.inner.in_use.0.fetch_add(class as u64, Relaxed);
        BufferLease {
            buffer,
            class,
            pool: Some(self.inner.clone()),
        }
    }
}

impl PoolInner {
    fn give_back(&self, class: usize, mut buffer: Vec<u8>) {
        self.in_use.0.fetch_sub(class as u64, Relaxed);
        let waiters = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if buffer.capacity() == class {
                buffer.clear();
                state.idle.push((class, buffer));
            } else {
                // The buffer was lost or replaced (an I/O error path); forget its class.
                state.allocated = state.allocated.saturating_sub(class);
            }
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

/// A leased buffer. Returns to the pool on drop, including after [`BufferLease::freeze`]
/// when the last `Bytes` clone is dropped.
#[derive(Debug)]
pub struct BufferLease {
    buffer: Vec<u8>,
    class: usize,
    pool: Option<Arc<PoolInner>>,
}

impl BufferLease {
    /// Takes the buffer out for an owned-buffer I/O call; put it back with [`Self::put`].
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    pub fn put(&mut self, buffer: Vec<u8>) {
        self.buffer = buffer;
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buffer
    }

    pub fn capacity(&self) -> usize {
        self.class
    }

    /// Freezes the filled buffer into `Bytes` for zero-copy fan-out.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for BufferLease {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for BufferLease {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(self.class, std::mem::take(&mut self.buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_executor_lite(f)
    }

    /// A minimal single-future executor for tests (the pool is runtime-agnostic).
    fn futures_executor_lite<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(0), MIN_CLASS);
        assert_eq!(class_of(3), MIN_CLASS);
        assert_eq!(class_of((1 << 20) + 1), 2 << 20);
        assert_eq!(class_of(64 << 20), 64 << 20);
    }

    #[test]
    fn reuses_and_respects_budget() {
        let pool = BufferPool::new(4 << 20);
        let a = block_on(pool.acquire(2 << 20));
        let b = block_on(pool.acquire(2 << 20));
        assert_eq!(pool.peak_allocated(), 4 << 20);
        assert_eq!(pool.in_use(), 4 << 20u64);
        let ptr = a.as_slice().as_ptr();
        drop(a);
        let c = block_on(pool.acquire(2 << 20));
        assert_eq!(c.buffer.as_ptr(), ptr, "buffer reused");
        drop((b, c));
        // A different class evicts idle buffers instead of exceeding the budget.
        let d = block_on(pool.acquire(4 << 20));
        assert_eq!(d.capacity(), 4 << 20);
        assert!(pool.peak_allocated() <= 4 << 20);
    }

    #[test]
    fn large_buffers_leave_the_small_reserve_alone() {
        let pool = BufferPool::with_small_reserve(8 << 20, 2 << 20);
        let big = block_on(pool.acquire(4 << 20));
        assert_eq!(pool.in_use(), 4 << 20u64);
        // A second 4 MiB buffer would eat into the reserve: it must wait (not polled here);
        // small ones still fit.
        let smalls: Vec<_> = (0..4).map(|_| block_on(pool.acquire(500 << 10))).collect();
        assert_eq!(pool.in_use(), (4 << 20) + 4 * (512 << 10));
        drop(smalls);
        drop(big);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn frozen_bytes_return_the_buffer() {
        let pool = BufferPool::new(1 << 20);
        let mut lease = block_on(pool.acquire(10));
        let mut buf = lease.take();
        buf.extend_from_slice(b"hello");
        lease.put(buf);
        let bytes = lease.freeze();
        let clone = bytes.clone();
        assert_eq!(&clone[..], b"hello");
        drop(bytes);
        assert_eq!(pool.in_use(), MIN_CLASS as u64, "a clone still holds it");
        drop(clone);
        assert_eq!(pool.lock().idle.len(), 1);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn waiter_is_woken_when_budget_frees() {
        let pool = BufferPool::new(MIN_CLASS);
        let first = block_on(pool.acquire(1));
        let pool2 = pool.clone();
        let handle = std::thread::spawn(move || block_on(pool2.acquire(1)).capacity());
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(first);
        assert_eq!(handle.join().ok(), Some(MIN_CLASS));
    }
}
