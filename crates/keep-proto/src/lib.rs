//! The Keep protocol as pure code, shared by keepmover and its simulator keepsim so that
//! both speak from one copy of every fact (`shared/keep-protocol.md`): no sockets, no files,
//! no clocks read here (callers pass "now" in).
//!
//! * [`keep`]: locators and the block identity, permission signatures, rendezvous order,
//!   keep_services and settings files, the discovery document, index bodies, and
//!   [`keep::wire`]: the shape of every keepstore request and how its answer is classified.
//! * [`hash`]: MD5, scalar and multi-lane SIMD (AVX-512/AVX2/SSE2), chosen at run time.
//! * [`header_value`]: request header values that are static or shared where they can be.

pub mod hash;
pub mod header_value;
pub mod keep;
