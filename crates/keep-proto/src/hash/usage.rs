//! How much each MD5 kernel hashed, and how full its lanes were, since the process started:
//! the figure that says whether multi-lane hashing is paying (a 16-lane kernel running with
//! two lanes filled costs nearly as much per step as with sixteen). Counted per kernel call
//! (relaxed atomics), not per byte.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Backend;

struct Counters {
    blocks: AtomicU64,
    calls: AtomicU64,
    /// Block steps times lanes filled, and block steps times lanes available.
    filled: AtomicU64,
    slots: AtomicU64,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            blocks: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            filled: AtomicU64::new(0),
            slots: AtomicU64::new(0),
        }
    }
}

static BY_BACKEND: [Counters; 4] = [
    Counters::new(),
    Counters::new(),
    Counters::new(),
    Counters::new(),
];

fn index(backend: Backend) -> usize {
    match backend {
        Backend::Scalar => 0,
        Backend::Sse2 => 1,
        Backend::Avx2 => 2,
        Backend::Avx512 => 3,
    }
}

/// The backend whose kernel has `width` lanes.
pub(super) fn backend_of_width(width: usize) -> Backend {
    match width {
        4 => Backend::Sse2,
        8 => Backend::Avx2,
        16 => Backend::Avx512,
        _ => Backend::Scalar,
    }
}

/// One kernel call: `blocks` 64-byte steps with `filled` of `width` lanes busy.
pub(super) fn record(backend: Backend, blocks: usize, filled: usize, width: usize) {
    let c = &BY_BACKEND[index(backend)];
    c.blocks.fetch_add((blocks * filled) as u64, Relaxed);
    c.calls.fetch_add(1, Relaxed);
    c.filled.fetch_add((blocks * filled) as u64, Relaxed);
    c.slots.fetch_add((blocks * width) as u64, Relaxed);
}

/// What one kernel did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelUse {
    pub backend: Backend,
    /// Bytes hashed (whole 64-byte blocks).
    pub bytes: u64,
    /// Kernel calls.
    pub calls: u64,
    /// Mean share of the kernel's lanes that were busy (1.0 for scalar).
    pub occupancy: f64,
}

/// Every kernel that hashed something, narrowest first.
pub fn kernel_use() -> Vec<KernelUse> {
    Backend::ALL
        .into_iter()
        .filter_map(|backend| {
            let c = &BY_BACKEND[index(backend)];
            let blocks = c.blocks.load(Relaxed);
            (blocks > 0).then(|| {
                let slots = c.slots.load(Relaxed).max(1);
                KernelUse {
                    backend,
                    bytes: blocks * 64,
                    calls: c.calls.load(Relaxed),
                    occupancy: c.filled.load(Relaxed) as f64 / slots as f64,
                }
            })
        })
        .collect()
}
