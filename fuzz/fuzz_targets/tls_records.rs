//! Fuzz target `tls_records`: keepmover's TLS 1.3 record layer (`net::tls_records`) opening
//! what a fuzzer-driven peer sends: application data, alerts, handshake fragments (tickets,
//! key updates, garbage), padded records, raw unsealed bytes and flipped bits, delivered in
//! pieces cut at fuzzer-chosen sizes. The key schedule is a deterministic stand-in (rustls's
//! needs a handshake), mirrored by the peer so that its key updates decrypt.
//!
//! Every record is opened twice: in place (`open`), and by a second record layer into a
//! destination of a capacity and limit the input chooses (`open_into`, which opens a record
//! that fits straight into the destination's spare capacity).
//!
//! Checks: no panic; every data range lies inside the buffer given and every record consumed
//! is inside it too; `open` and `open_into` agree on every record (outcome, bytes consumed,
//! data, error), `open_into` never grows the destination past its capacity or the limit and
//! leaves it alone on anything but data; and when the peer sent only well-formed data and
//! key updates, exactly its data comes out, in order, one key update answers all it asked for, and what keepmover
//! then seals (its data back, moving its own key on every few records, as the input says)
//! is opened by a second record layer standing for the peer, intact.
#![no_main]

use keepmover::net::tls_records::{content, KeySchedule, Opened, Records, Sealer};
use libfuzzer_sys::fuzz_target;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::{ConnectionTrafficSecrets, PeerMisbehaved};

fn secret(epoch: u8) -> ConnectionTrafficSecrets {
    ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from([epoch; 32]),
        iv: Iv::new([epoch ^ 0x5a; 12]),
    }
}

/// Receiving epochs count up from 1, sending epochs from 101.
struct Schedule {
    receiving: u8,
    sending: u8,
}

impl KeySchedule for Schedule {
    fn next_sending(&mut self) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        self.sending = self.sending.wrapping_add(1);
        Ok(secret(self.sending))
    }
    fn next_receiving(&mut self) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        self.receiving = self.receiving.wrapping_add(1);
        Ok(secret(self.receiving))
    }
    fn session_ticket(&mut self, body: &[u8]) -> Result<(), rustls::Error> {
        if body.is_empty() {
            return Err(rustls::Error::General("empty ticket".into()));
        }
        Ok(())
    }
}

/// A record layer sending under epoch `sending` and receiving under `receiving`, each moving
/// on by one at a key update.
fn records_at(sending: u8, receiving: u8) -> Records {
    Records::new(
        (0, secret(sending)),
        (0, secret(receiving)),
        Box::new(Schedule { receiving, sending }),
    )
    .expect("records")
}

fuzz_target!(|data: &[u8]| {
    let [cuts_byte, per_key_byte, rest @ ..] = data else {
        return;
    };
    let mut peer = Sealer::new(&secret(1)).expect("sealer");
    let mut peer_epoch = 1u8;
    let (mut wire, mut wire_len) = (Vec::new(), 0usize);
    let mut sent = Vec::new();
    let mut well_formed = true;
    let mut requested_updates = 0usize;
    // Runs the record layer cuts off (more than 32 in a row without non-empty data between).
    let (mut empty_run, mut update_run) = (0u32, 0u32);
    let (mut empty_flood, mut update_flood) = (false, false);
    let mut input = rest;
    let take = |n: usize, input: &mut &[u8]| -> Vec<u8> {
        let n = n.min(input.len());
        let (head, tail) = input.split_at(n);
        *input = tail;
        head.to_vec()
    };
    while let Some((&op, tail)) = input.split_first() {
        input = tail;
        let arg = take(1, &mut input).first().copied().unwrap_or(0);
        match op % 7 {
            0 => {
                let payload = take(usize::from(arg) * 64, &mut input);
                peer.seal(&payload, &[content::APPLICATION_DATA], &mut wire, &mut wire_len)
                    .expect("seal");
                if payload.is_empty() {
                    empty_run += 1;
                    empty_flood |= empty_run > 32;
                } else {
                    (empty_run, update_run) = (0, 0);
                }
                sent.extend_from_slice(&payload);
            }
            1 => {
                let alert = take(2, &mut input);
                peer.seal(&alert, &[content::ALERT], &mut wire, &mut wire_len).expect("seal");
                well_formed = false;
            }
            2 => {
                let fragment = take(usize::from(arg), &mut input);
                peer.seal(&fragment, &[content::HANDSHAKE], &mut wire, &mut wire_len)
                    .expect("seal");
                well_formed = false;
            }
            3 => {
                let request = arg & 1;
                peer.seal(&[24, 0, 0, 1, request], &[content::HANDSHAKE], &mut wire, &mut wire_len)
                    .expect("seal");
                peer_epoch = peer_epoch.wrapping_add(1);
                peer = Sealer::new(&secret(peer_epoch)).expect("sealer");
                requested_updates += usize::from(request);
                update_run += 1;
                update_flood |= update_run > 32;
            }
            4 => {
                let payload = take(usize::from(arg), &mut input);
                let mut trailer = vec![arg % 30];
                trailer.resize(1 + usize::from(arg % 17), 0);
                peer.seal(&payload, &trailer, &mut wire, &mut wire_len).expect("seal");
                well_formed = false;
            }
            5 => {
                let raw = take(usize::from(arg), &mut input);
                wire.truncate(wire_len);
                wire.extend_from_slice(&raw);
                wire_len = wire.len();
                well_formed = false;
            }
            _ => {
                if wire_len > 0 {
                    let at = usize::from(arg) * 131 % wire_len;
                    wire[at] ^= 1 << (arg % 8);
                    well_formed = false;
                }
            }
        }
    }
    wire.truncate(wire_len);

    let mut records = records_at(101, 1);
    let mut buffer: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut fed = 0;
    let piece = 1 + usize::from(*cuts_byte) * 97;
    let mut verdict = Ok(());
    // The same records opened twice, record by record: in place (`open`), and into a
    // destination of a chosen capacity, at most a chosen limit per call, emptied as a
    // connection's reader would (`open_into`). The two must agree on every record.
    let mut records_into = records_at(101, 1);
    let mut buffer_into: Vec<u8> = Vec::new();
    let mut got_into = Vec::new();
    let capacity = 1 + usize::from(per_key_byte >> 3) * 1100;
    let limit = 1 + usize::from(cuts_byte % 16) * 1500;
    let mut dest = Vec::with_capacity(capacity);
    let mut overflow = Vec::new();
    'feed: while fed < wire.len() {
        let n = piece.min(wire.len() - fed);
        buffer.extend_from_slice(&wire[fed..fed + n]);
        buffer_into.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            let len = buffer.len();
            let before = dest.len();
            let spare = capacity - before;
            let want = records.open(&mut buffer);
            let opened = records_into.open_into(&mut buffer_into, &mut dest, limit, &mut overflow);
            assert!(dest.capacity() == capacity);
            if !matches!(opened, Ok(Opened::Appended { .. })) {
                assert!(dest.len() == before && overflow.is_empty());
            }
            match (want, opened) {
                (Ok(Opened::Incomplete), Ok(Opened::Incomplete)) => break,
                (Ok(Opened::Data { payload, consumed }), Ok(Opened::Appended { consumed: c })) => {
                    assert!(payload.end <= consumed && consumed <= len && consumed == c);
                    let data = &buffer[payload];
                    let kept = data.len().min(limit).min(spare);
                    assert!(dest.len() == before + kept && dest[before..] == data[..kept]);
                    assert!(overflow[..] == data[kept..]);
                    got.extend_from_slice(data);
                    buffer.drain(..consumed);
                    buffer_into.drain(..consumed);
                    if !overflow.is_empty() || capacity - dest.len() < 4000 {
                        got_into.append(&mut dest);
                        got_into.append(&mut overflow);
                    }
                }
                (Ok(Opened::Absorbed { consumed }), Ok(Opened::Absorbed { consumed: c })) => {
                    assert!(consumed > 0 && consumed <= len && consumed == c);
                    buffer.drain(..consumed);
                    buffer_into.drain(..consumed);
                }
                (Ok(Opened::Closed { consumed }), Ok(Opened::Closed { consumed: c })) => {
                    assert!(consumed > 0 && consumed <= len && consumed == c);
                    break 'feed;
                }
                (Err(e), Err(f)) => {
                    assert_eq!(format!("{e:?}"), format!("{f:?}"));
                    verdict = Err(e);
                    break 'feed;
                }
                (want, got) => panic!("open: {want:?}; open_into: {got:?}"),
            }
        }
    }
    got_into.append(&mut dest);
    assert!(got_into == got, "{} bytes into, {} in place", got_into.len(), got.len());
    if !well_formed {
        return;
    }
    // The two refusals of a well-formed peer, each only where its run was sent.
    match verdict {
        Err(rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyKeyUpdateRequests))
            if update_flood =>
        {
            return
        }
        Err(rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments))
            if empty_flood =>
        {
            return
        }
        _ => {}
    }
    assert!(verdict.is_ok(), "{verdict:?}");
    assert!(buffer.is_empty());
    assert!(got == sent, "{} of {} bytes", got.len(), sent.len());

    // keepmover's side: its owed answer (one KeyUpdate record, 5 + 5 + 1 + 16 bytes), then
    // the data back, read by a record layer on the peer's side.
    records.set_records_per_key(1 + u64::from(*per_key_byte % 8));
    let (mut out, mut out_len) = (Vec::new(), 0usize);
    records.seal(&[], &mut out, &mut out_len).expect("seal");
    assert_eq!(out_len, if requested_updates > 0 { 27 } else { 0 });
    records.seal(&got, &mut out, &mut out_len).expect("seal");
    out.truncate(out_len);
    let mut peer_side = records_at(201, 101);
    let mut back = Vec::new();
    let mut at = 0;
    while at < out.len() {
        match peer_side.open(&mut out[at..]) {
            Ok(Opened::Data { payload, consumed }) => {
                back.extend_from_slice(&out[at + payload.start..at + payload.end]);
                at += consumed;
            }
            Ok(Opened::Absorbed { consumed }) => at += consumed,
            other => panic!("{other:?} at {at} of {}", out.len()),
        }
    }
    assert!(back == got, "{} of {} bytes back", back.len(), got.len());
});
