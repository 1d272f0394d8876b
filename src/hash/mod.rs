//! MD5 for block verification and rendezvous weights.
