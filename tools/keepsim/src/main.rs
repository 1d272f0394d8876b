//! The `keepsim` binary: starts simulated clusters from the command line.

fn main() {}
