//! Faults a keepstore can be told to inject, switchable at run time per keepstore with
//! [`crate::Cluster::set_faults`] or `PUT /_keepsim/faults` (this struct as JSON; missing
//! fields take their defaults, so `{"stall_mid_body":true}` sets one fault and clears the
//! others). They exist for keepmover's reliability tests: each reproduces one way a real
//! keepstore, a proxy in front of it or the network has been seen to misbehave.

use serde::{Deserialize, Serialize};

/// How a PUT lies about what it stored (`lie_replicas`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LieReplicas {
    /// Tell the truth.
    #[default]
    Off,
    /// Store as usual, then claim one replica more than was stored (stores 1, claims 2) in
    /// `X-Keep-Replicas-Stored`, and one more per confirmed class.
    Extra,
    /// Store nothing at all, yet answer 200 with the signed locator and the headers a
    /// successful write to the first eligible mount would have given.
    StoreNothing,
}

/// Faults to inject. Several may be set at once; see each field for which requests it hits.
/// Block GETs that fail mid-body apply, in this order of precedence: `stall_mid_body`,
/// `reset`, `close_mid_body`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0..1) of answering 500 to a block request (GET, HEAD, PUT, ...).
    pub error_500: f64,
    /// Probability of answering 503 to a block request.
    pub error_503: f64,
    /// The next this many block requests answer 503, then the storm is over (counted down
    /// as they are answered). A deterministic storm, for tests that must know which
    /// request of a block meets it (retry order), where `error_503` can only say how often.
    pub error_503_next: u32,
    /// Added before every response, in milliseconds.
    pub delay_ms: u64,
    /// Block GET bodies stop halfway (after the full head and a correct Content-Length) and
    /// the connection is closed (FIN).
    pub close_mid_body: bool,
    /// Block GET bodies have one byte flipped (status and length stay right).
    pub corrupt_body: bool,
    /// Index bodies stop before their completion blank line (connection closed).
    pub truncate_index: bool,
    /// The keepstore is "down": new connections are reset (RST) as soon as they are
    /// accepted, and a request arriving on an already open connection gets no answer, only
    /// a reset.
    pub down: bool,
    /// Block GETs send the head (correct Content-Length) and half the body, then nothing
    /// more, ever: the connection stays open and silent (no FIN, no RST) until the client
    /// gives up or the keepstore restarts. The request keeps its slot in the limiter, as a
    /// stuck keepstore handler would.
    pub stall_mid_body: bool,
    /// Block GET bodies are sent at this rate in bytes per second (0 = full speed).
    pub trickle_bytes_per_sec: u64,
    /// How often the block GET body faults (`corrupt_body`, `stall_mid_body`, `reset`,
    /// `close_mid_body`, `trickle_bytes_per_sec`, `endless_trailers`) strike: `None` (the
    /// default) on every GET, `Some(p)` on each GET independently with probability `p`, the
    /// others served clean. A soak needs a keepstore that misbehaves now and then, as a
    /// flaky disk or network does, rather than one that fails every read.
    pub body_fault_probability: Option<f64>,
    /// Block GETs and index requests are answered chunked (no Content-Length); after the
    /// last chunk (`0\r\n`) the server sends trailer lines `:\r\n` forever instead of the
    /// final `\r\n`, as long as the client reads.
    pub endless_trailers: bool,
    /// PUTs lie about the replicas stored; see [`LieReplicas`]. JSON: `"off"`, `"extra"`,
    /// `"store_nothing"`.
    pub lie_replicas: LieReplicas,
    /// Block GETs send the head and half the body, then the connection is reset (RST, via
    /// `SO_LINGER` 0).
    pub reset: bool,
    /// Probability (0..1) of answering a block GET with 401 `expired signature` (whatever
    /// the signature), to exercise re-signing and retrying.
    pub expired_401: f64,
    /// Pull-list test hook: the next list of two or more items loses its second half (as if
    /// keep-balance had replaced part of it); the flag then clears itself.
    pub pull_drop_second_half_once: bool,
    /// Pull test hook: blocks whose hash starts with one of these arrive damaged at this
    /// keepstore's pull worker (so its MD5 check fails), while other clients read them fine.
    pub pull_corrupt: Vec<String>,
    /// Pull test hook: lists are accepted and their items taken, but nothing is pulled.
    pub pull_ignore: bool,
}

impl Faults {
    /// True with probability `p`.
    pub(crate) fn roll(p: f64) -> bool {
        p > 0.0 && rand::random::<f64>() < p
    }

    /// The faults one block GET body gets: all of them, or, when `body_fault_probability`
    /// rolls against this GET, none of the body faults (the others stay as set).
    pub(crate) fn for_one_body(&self) -> Faults {
        let mut faults = self.clone();
        if let Some(p) = self.body_fault_probability {
            if !Faults::roll(p) {
                faults.corrupt_body = false;
                faults.stall_mid_body = false;
                faults.reset = false;
                faults.close_mid_body = false;
                faults.trickle_bytes_per_sec = 0;
                faults.endless_trailers = false;
            }
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form() {
        let f: Faults =
            serde_json::from_str(r#"{"stall_mid_body":true,"lie_replicas":"store_nothing"}"#)
                .expect("valid faults");
        assert!(f.stall_mid_body);
        assert_eq!(f.lie_replicas, LieReplicas::StoreNothing);
        assert_eq!(f.trickle_bytes_per_sec, 0);
        assert!(serde_json::from_str::<Faults>(r#"{"no_such_fault":1}"#).is_err());
        assert!(f.for_one_body().stall_mid_body, "no probability: every GET");
        let never: Faults = serde_json::from_str(
            r#"{"reset":true,"body_fault_probability":0.0,"error_503_next":2}"#,
        )
        .expect("valid faults");
        assert!(!never.for_one_body().reset, "probability 0: no GET");
        assert_eq!(never.error_503_next, 2);
        let back: Faults = serde_json::from_str(
            &serde_json::to_string(&Faults {
                lie_replicas: LieReplicas::Extra,
                expired_401: 0.5,
                ..Faults::default()
            })
            .expect("serialises"),
        )
        .expect("parses");
        assert_eq!(back.lie_replicas, LieReplicas::Extra);
        assert_eq!(back.expired_401, 0.5);
    }
}
