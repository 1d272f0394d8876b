//! What the user sees: progress lines, the live bar, the final summary.
