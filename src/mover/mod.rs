//! The copy engine: tasks, worker threads, the buffer pool, replica fan-out and checkpoints.
