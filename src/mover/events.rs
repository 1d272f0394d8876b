//! The engine speaks in events. Workers and the walker describe what happened (a run
//! planned, a block started, copied, skipped or failed with a typed cause, a slice done, a
//! warning); sinks outside the engine (keep-rsync's log lines, the progress bar, reports,
//! metrics) turn them into what people see. Workers never write to a terminal: they buffer
//! events and hand them over in batches to one pump thread that owns the sinks, so a block
//! costs no cross-thread hand-off of its own and a slow terminal slows the run (back-pressure)
//! rather than growing memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use super::counters::Counters;
use crate::keep::ShortLocator;
use crate::keepstore::ErrorKind;

/// What the walk found before copying (or, estimated, from its first slices).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    pub src_blocks: u64,
    pub dst_blocks: u64,
    pub to_copy_blocks: u64,
    pub to_copy_bytes: u64,
    /// Source blocks the destination already has (move and vacate read them back).
    pub present_blocks: u64,
    pub present_bytes: u64,
    /// `Some(slices read)` when the totals are extrapolated from the first slices.
    pub estimated_from_slices: Option<u64>,
    pub slices_total: u64,
}

/// What happened to one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Copied,
    Skipped,
    Verified,
    Replaced,
    Trashed,
    /// Pulled by a destination keepstore from a pull list, confirmed in its index.
    Pulled,
    Failed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Copied => "copied",
            Action::Skipped => "skipped",
            Action::Verified => "verified",
            Action::Replaced => "replaced",
            Action::Trashed => "trashed",
            Action::Pulled => "pulled",
            Action::Failed => "failed",
        }
    }
}

/// Why a block failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockError {
    pub kind: ErrorKind,
    /// One line, keep-rsync's wording where keep-rsync has one.
    pub text: String,
}

/// One block's outcome: one line of `-report`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    pub block: ShortLocator,
    pub action: Action,
    pub bytes: u64,
    /// Index into the source cluster's services.
    pub source: Option<u16>,
    /// Indexes into the destination cluster's services that confirmed a copy.
    pub stored_on: Vec<u16>,
    /// Requests made for this block (GETs and PUTs).
    pub attempts: u32,
    pub error: Option<BlockError>,
}

/// Where the job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Planning,
    Copying,
    Paused,
    Stopping,
    Done,
}

/// Something the engine has to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The totals are known (counted or estimated) and copying starts.
    Planned(Plan),
    /// A worker starts a block: keep-rsync's `Copying data block N of M` moment.
    Started {
        number: u64,
        /// Planned blocks and blocks finished when it started (for keep-rsync's % and ETA).
        planned: u64,
        finished: u64,
        block: ShortLocator,
    },
    Done(BlockRecord),
    /// The walk starts on this slice (its index is read, then its blocks handed out).
    SliceStarted {
        prefix: String,
    },
    /// Every block of this slice is settled; `watermark` is the checkpoint's new value when
    /// it advanced.
    SliceDone {
        prefix: String,
        watermark: Option<String>,
    },
    /// A problem worth a line that did not stop the run.
    Warning(String),
    /// `validate`: one block checked (boxed: a verdict is larger than the other events).
    Checked(Box<super::validate::CheckRecord>),
    /// Progress worth a line that is not a problem (pull mode's per-slice lines).
    Note(String),
    Phase(Phase),
}

/// Where events go. Implemented outside the engine (`report`); called on the pump thread.
pub trait EventSink: Send {
    /// A batch of events, in the order each thread produced them.
    fn events(&mut self, batch: &[Event], counters: &Counters);
    /// Called about five times a second, with or without events.
    fn tick(&mut self, _counters: &Counters) {}
    /// The engine has finished; the last events have been delivered.
    fn finish(&mut self, _counters: &Counters) {}
}

/// Events held before a hand-over.
const BATCH: usize = 256;
/// Longest time a held event waits for its batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Batches in the hand-over channel before producers wait.
const CHANNEL_BATCHES: usize = 64;

/// The sending side, one per producing thread or task group; batches events.
pub struct Emitter {
    sender: Sender<Vec<Event>>,
    held: Vec<Event>,
    since: Instant,
}

impl Emitter {
    /// Queues an event; hands the batch over when it is full or old.
    pub fn emit(&mut self, event: Event) {
        if self.held.is_empty() {
            self.since = Instant::now();
        }
        self.held.push(event);
        if self.held.len() >= BATCH || self.since.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Hands over what is held now.
    pub fn flush(&mut self) {
        if !self.held.is_empty() {
            let batch = std::mem::replace(&mut self.held, Vec::with_capacity(BATCH));
            // The pump only goes away after every emitter; a send error cannot happen then.
            let _ = self.sender.send(batch);
        }
    }

    /// Another emitter on the same pump (for another thread).
    pub fn fork(&self) -> Emitter {
        Emitter {
            sender: self.sender.clone(),
            held: Vec::new(),
            since: Instant::now(),
        }
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The thread that owns the sinks.
pub struct Pump {
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Pump {
    /// Starts the pump thread; returns it and the first emitter.
    pub fn start(
        sinks: Vec<Box<dyn EventSink>>,
        counters: Arc<Counters>,
    ) -> std::io::Result<(Pump, Emitter)> {
        let (sender, receiver) = crossbeam_channel::bounded(CHANNEL_BATCHES);
        let handle = std::thread::Builder::new()
            .name("keepmover-events".into())
            .spawn(move || pump(receiver, sinks, &counters))?;
        Ok((
            Pump {
                handle: Some(handle),
            },
            Emitter {
                sender,
                held: Vec::new(),
                since: Instant::now(),
            },
        ))
    }

    /// Waits until every emitter is gone and the sinks have seen everything.
    pub fn join(mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn pump(receiver: Receiver<Vec<Event>>, mut sinks: Vec<Box<dyn EventSink>>, counters: &Counters) {
    let tick = Duration::from_millis(200);
    let mut last_tick = Instant::now();
    loop {
        match receiver.recv_timeout(tick) {
            Ok(batch) => {
                for sink in &mut sinks {
                    sink.events(&batch, counters);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            for sink in &mut sinks {
                sink.tick(counters);
            }
        }
    }
    for sink in &mut sinks {
        sink.finish(counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Arc<Mutex<Vec<Event>>>, Arc<Mutex<bool>>);

    impl EventSink for Collect {
        fn events(&mut self, batch: &[Event], _: &Counters) {
            if let Ok(mut seen) = self.0.lock() {
                seen.extend_from_slice(batch);
            }
        }
        fn finish(&mut self, _: &Counters) {
            if let Ok(mut done) = self.1.lock() {
                *done = true;
            }
        }
    }

    #[test]
    fn events_arrive_in_order_and_finish_once_emitters_are_gone() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let finished = Arc::new(Mutex::new(false));
        let (pump, mut emitter) = Pump::start(
            vec![Box::new(Collect(seen.clone(), finished.clone()))],
            Arc::new(Counters::default()),
        )
        .expect("pump starts");
        let mut other = emitter.fork();
        let worker = std::thread::spawn(move || {
            for i in 0..1000 {
                other.emit(Event::Warning(format!("w{i}")));
            }
        });
        emitter.emit(Event::Phase(Phase::Copying));
        drop(emitter);
        worker.join().expect("worker");
        pump.join();
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1001);
        let warnings: Vec<&Event> = seen
            .iter()
            .filter(|e| matches!(e, Event::Warning(_)))
            .collect();
        assert_eq!(warnings[0], &Event::Warning("w0".into()));
        assert_eq!(warnings[999], &Event::Warning("w999".into()));
        assert!(*finished.lock().expect("lock"));
    }
}
