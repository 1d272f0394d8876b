//! keepsim: a keepstore and Arvados API-server simulator, faithful to the real keepstore's
//! wire behaviour (see `shared/keep-protocol.md` §5), for keepmover's tests, benches and demo.

#[path = "../../../src/keep/mod.rs"]
pub mod keep;
