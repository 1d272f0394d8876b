//! The head-reading loop (`read_final_head`'s logic without the socket): interim 1xx heads
//! are skipped, 101 refused, the size limit and the interim budget
//! (`MAX_INTERIM_FACTOR * max_head_bytes`) enforced, whatever the bytes and however they
//! arrive. Checks: no panic, progress (every step consumes or asks for more), the final head
//! is within the limit, and the outcome does not depend on the split points.
#![no_main]
use keepmover::net::{head_step, HeadError, HeadStep, MAX_INTERIM_FACTOR};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Outcome {
    Final { status: u16, at: usize },
    TooLarge,
    Bad,
    NeedMore,
}

fn run(wire: &[u8], max_head: usize, step: usize) -> Outcome {
    let mut offset = 0; // bytes consumed
    let mut have = 0; // bytes received
    let mut interim = 0;
    loop {
        match head_step(&wire[offset..have], max_head) {
            Ok(HeadStep::Final(head)) => {
                assert!(head.head_len <= max_head && head.head_len <= have - offset);
                assert!(head.status >= 200);
                return Outcome::Final { status: head.status, at: offset + head.head_len };
            }
            Ok(HeadStep::Interim(len)) => {
                assert!(len > 0 && len <= have - offset);
                offset += len;
                interim += len;
                if interim > MAX_INTERIM_FACTOR * max_head {
                    return Outcome::TooLarge;
                }
            }
            Ok(HeadStep::Partial) => {
                assert!(have - offset < max_head);
                if have == wire.len() {
                    return Outcome::NeedMore;
                }
                have = (have + step).min(wire.len());
            }
            Err(HeadError::TooLarge { limit }) => {
                assert_eq!(limit, max_head);
                return Outcome::TooLarge;
            }
            Err(HeadError::Bad(_)) => return Outcome::Bad,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_head = 64 + usize::from(data[0]) * 16;
    let step = 1 + usize::from(data[1] % 32);
    let wire = &data[2..];
    let whole = run(wire, max_head, wire.len().max(1));
    let split = run(wire, max_head, step);
    // A limit hit while bytes still arrive may show as TooLarge or as the same final head
    // seen earlier; everything else must agree.
    match (&whole, &split) {
        (a, b) if a == b => {}
        (Outcome::TooLarge, _) | (_, Outcome::TooLarge) => {}
        _ => panic!("whole {whole:?} vs split {split:?}"),
    }
});
