//! The completion-based HTTP/1.1 client. It knows HTTP, not Keep.
