//! TLS 1.3 application records after the handshake, sealed and opened here with aws-lc-rs's
//! AES-GCM while rustls keeps the keys. No I/O.
//!
//! Why: rustls 0.23 makes three passes over the bytes of a copy over HTTPS that the cipher
//! does not need. Sealing copies each record's plaintext into a scratch, encrypts it there
//! and copies the sealed record into our send buffer. Opening decrypts in place and then
//! copies the record into a `Vec` it hands out. Here a record is sealed straight from the
//! caller's bytes into the send buffer (`seal_out_of_place_scatter`, with the inner
//! content-type byte as its extra input), and opened in place in the receive buffer, from
//! where the caller copies it once (as before) into its destination.
//!
//! What rustls still does ([`KernelConnection`], its API for kernel TLS): the handshake,
//! certificate checks, the key schedule (new traffic secrets at a key update) and session
//! tickets. What this module does itself, from RFC 8446 §4.6 and §5:
//! * record framing: outer type application_data only (a change_cipher_spec, a plaintext
//!   alert or handshake record after the handshake is an error), a legacy version of 3.x
//!   (its minor is ignored, as rustls and Go do; the AEAD authenticates it anyway),
//!   ciphertext at most 2^14 + 256 bytes, inner plaintext at most 2^14 + 1 (content at most
//!   2^14), the content type being its last non-zero byte (zero padding stripped);
//! * nonces: the traffic IV XOR the record's 64-bit sequence number, one sequence per key
//!   and direction, starting at 0 at every key change. Sealing goes through aws-lc-rs's
//!   TLS 1.3 record key, which itself refuses a sequence that does not count up (no
//!   nonce is ever used twice);
//! * post-handshake messages: NewSessionTicket goes to rustls (resumption); KeyUpdate moves
//!   the receiving key on, and when the server asks, keepmover answers with one KeyUpdate of
//!   its own in front of the next data it sends (as rustls does: an idle connection owes
//!   nothing on the wire). A handshake message may span records but not a key change, and
//!   no other record may come between its pieces;
//! * alerts: close_notify ends the stream; a warning user_canceled is ignored (a few of
//!   them); any other alert, or an unknown level, is an error (§6, as rustls does);
//! * limits: after [`RECORDS_PER_KEY`] records keepmover moves its own sending key on
//!   (AES-GCM's confidentiality limit, §5.5); runs of empty records or of key updates are
//!   cut off, as rustls cuts off key updates.
//!
//! Only AES-GCM suites over TLS 1.3 are taken over (what a Go keepstore picks on a CPU with
//! AES hardware); TLS 1.2 and ChaCha20 stay with rustls.

use std::ops::Range;

use aws_lc_rs::aead::{
    Aad, LessSafeKey, Nonce, TlsProtocolId, TlsRecordSealingKey, UnboundKey, AES_128_GCM,
    AES_256_GCM, NONCE_LEN,
};
use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, Error, HandshakeType, InvalidMessage,
    PeerMisbehaved,
};

/// Record header: content type, legacy version (2), length (2).
const HEADER: usize = 5;
/// AES-GCM tag.
const TAG: usize = 16;
/// Largest content of a record (RFC 8446 §5.1); its inner plaintext adds the type byte.
const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest ciphertext of a record (RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// The legacy record version keepmover writes; it reads any 3.x.
const LEGACY_VERSION: [u8; 2] = [3, 3];

/// Content types (RFC 8446 §5.1).
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// Handshake message types after the handshake (RFC 8446 §4).
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;
/// KeyUpdateRequest values.
const UPDATE_NOT_REQUESTED: u8 = 0;
const UPDATE_REQUESTED: u8 = 1;
/// Alert levels and the two alert descriptions that are not errors.
const WARNING: u8 = 1;
const FATAL: u8 = 2;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
/// Warning alerts (user_canceled) accepted per connection, as rustls allows.
const MAX_WARNINGS: u32 = 4;

/// Records sealed under one key before keepmover moves its sending key on: half of rustls's
/// AES-GCM confidentiality limit (2^24 records; RFC 8446 §5.5 allows 2^24.5). At 16 KiB a
/// record that is a key update every 128 GiB sent on one connection.
pub const RECORDS_PER_KEY: u64 = 1 << 23;

/// Largest post-handshake handshake message accepted (tickets are a few hundred bytes).
const MAX_HANDSHAKE_MESSAGE: usize = 64 << 10;

/// Most empty application-data records in a row, and most key updates without application
/// data between them, before the peer is taken to be looping (rustls's and BoringSSL's
/// figure for key updates).
const MAX_IDLE_RECORDS: u32 = 32;

/// The key schedule rustls keeps after the handshake: what the record layer asks of it.
pub trait KeySchedule {
    /// The next sending secret (after keepmover sent a KeyUpdate).
    fn next_sending(&mut self) -> Result<ConnectionTrafficSecrets, Error>;
    /// The next receiving secret (the server sent a KeyUpdate).
    fn next_receiving(&mut self) -> Result<ConnectionTrafficSecrets, Error>;
    /// A NewSessionTicket message's body.
    fn session_ticket(&mut self, body: &[u8]) -> Result<(), Error>;
}

impl KeySchedule for KernelConnection<ClientConnectionData> {
    fn next_sending(&mut self) -> Result<ConnectionTrafficSecrets, Error> {
        self.update_tx_secret().map(|(_, secrets)| secrets)
    }

    fn next_receiving(&mut self) -> Result<ConnectionTrafficSecrets, Error> {
        self.update_rx_secret().map(|(_, secrets)| secrets)
    }

    fn session_ticket(&mut self, body: &[u8]) -> Result<(), Error> {
        self.handle_new_session_ticket(body)
    }
}

/// The AEAD of a traffic secret, if this module takes it: AES-GCM only.
fn aead(
    secrets: &ConnectionTrafficSecrets,
) -> Option<(&'static aws_lc_rs::aead::Algorithm, &[u8], &[u8])> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            Some((&AES_128_GCM, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            Some((&AES_256_GCM, key.as_ref(), iv.as_ref()))
        }
        _ => None,
    }
}

fn unsupported() -> Error {
    Error::General("TLS record protection: only AES-GCM is taken over".into())
}

/// The per-record nonce: the IV with the sequence number XORed into its last 8 bytes.
fn nonce(iv: &[u8; NONCE_LEN], seq: u64) -> Nonce {
    let mut nonce = *iv;
    for (byte, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
        *byte ^= s;
    }
    Nonce::assume_unique_for_key(nonce)
}

fn iv_of(iv: &[u8]) -> Result<[u8; NONCE_LEN], Error> {
    iv.try_into().map_err(|_| unsupported())
}

/// One direction's sealing key and sequence number.
pub struct Sealer {
    key: TlsRecordSealingKey,
    iv: [u8; NONCE_LEN],
    /// Records sealed under this key (the next one's sequence number).
    seq: u64,
}

impl Sealer {
    /// A sealing key at sequence 0, where TLS 1.3 starts every key (aws-lc-rs's TLS 1.3 key
    /// takes the first nonce it sees as sequence 0, and refuses any that does not count up
    /// from it).
    pub fn new(secrets: &ConnectionTrafficSecrets) -> Result<Sealer, Error> {
        let (algorithm, key, iv) = aead(secrets).ok_or_else(unsupported)?;
        Ok(Sealer {
            key: TlsRecordSealingKey::new(algorithm, TlsProtocolId::TLS13, key)
                .map_err(|_| unsupported())?,
            iv: iv_of(iv)?,
            seq: 0,
        })
    }

    /// Seals one record of `payload` into `out` after its first `*out_len` bytes (growing
    /// `out`, which stays initialised to its full length), its inner content type and padding
    /// being `trailer` (the type byte, then zeros).
    pub fn seal(
        &mut self,
        payload: &[u8],
        trailer: &[u8],
        out: &mut Vec<u8>,
        out_len: &mut usize,
    ) -> Result<(), Error> {
        let length = payload.len() + trailer.len() + TAG;
        if payload.len() > MAX_PLAINTEXT || length > MAX_CIPHERTEXT || trailer.is_empty() {
            return Err(Error::EncryptError);
        }
        let end = *out_len + HEADER + length;
        if out.len() < end {
            out.resize(end, 0);
        }
        let [hi, lo] = (length as u16).to_be_bytes();
        let header = [
            content::APPLICATION_DATA,
            LEGACY_VERSION[0],
            LEGACY_VERSION[1],
            hi,
            lo,
        ];
        let record = &mut out[*out_len..end];
        let (head, body) = record.split_at_mut(HEADER);
        head.copy_from_slice(&header);
        let (ciphertext, trailer_and_tag) = body.split_at_mut(payload.len());
        // One nonce per sequence number, and the sequence only moves on.
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Error::EncryptError)?;
        self.key
            .seal_out_of_place_scatter(
                nonce(&self.iv, seq),
                Aad::from(header),
                payload,
                ciphertext,
                trailer,
                trailer_and_tag,
            )
            .map_err(|_| Error::EncryptError)?;
        *out_len = end;
        Ok(())
    }
}

/// One direction's opening key and sequence number.
struct Opener {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Opener {
    fn new(secrets: &ConnectionTrafficSecrets, seq: u64) -> Result<Opener, Error> {
        let (algorithm, key, iv) = aead(secrets).ok_or_else(unsupported)?;
        Ok(Opener {
            key: LessSafeKey::new(UnboundKey::new(algorithm, key).map_err(|_| unsupported())?),
            iv: iv_of(iv)?,
            seq,
        })
    }

    /// Opens the record at the front of `cin` in place: `None` until it is complete, else
    /// its inner content type, its content's range in `cin` and the record's length.
    fn open(&mut self, cin: &mut [u8]) -> Result<Option<(u8, Range<usize>, usize)>, Error> {
        let Some(header) = cin.get(..HEADER) else {
            return Ok(None);
        };
        let header: [u8; HEADER] = [header[0], header[1], header[2], header[3], header[4]];
        match header[0] {
            content::APPLICATION_DATA => {}
            content::CHANGE_CIPHER_SPEC => {
                return Err(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec.into())
            }
            content::ALERT | content::HANDSHAKE => {
                return Err(InvalidMessage::UnexpectedMessage(
                    "plaintext record after the handshake",
                )
                .into())
            }
            _ => return Err(InvalidMessage::InvalidContentType.into()),
        }
        if header[1] != LEGACY_VERSION[0] {
            return Err(InvalidMessage::UnknownProtocolVersion.into());
        }
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length > MAX_CIPHERTEXT {
            return Err(InvalidMessage::MessageTooLarge.into());
        }
        if length <= TAG {
            return Err(Error::DecryptError);
        }
        let Some(body) = cin.get_mut(HEADER..HEADER + length) else {
            return Ok(None);
        };
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Error::DecryptError)?;
        let plaintext = self
            .key
            .open_in_place(nonce(&self.iv, seq), Aad::from(header), body)
            .map_err(|_| Error::DecryptError)?;
        // TLSInnerPlaintext: the content, its type, padding, at most 2^14 + 1 bytes (§5.4).
        if plaintext.len() > MAX_PLAINTEXT + 1 {
            return Err(Error::PeerSentOversizedRecord);
        }
        // The content type is the last non-zero byte; zeros after it are padding.
        let Some(type_at) = plaintext.iter().rposition(|&b| b != 0) else {
            return Err(PeerMisbehaved::IllegalTlsInnerPlaintext.into());
        };
        Ok(Some((
            plaintext[type_at],
            HEADER..HEADER + type_at,
            HEADER + length,
        )))
    }
}

/// What one record at the front of the receive buffer was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// No complete record yet.
    Incomplete,
    /// Application data at `payload` (in the buffer given); `consumed` bytes are done with
    /// once the caller has taken it.
    Data {
        payload: Range<usize>,
        consumed: usize,
    },
    /// A record for the session itself (a ticket, a key update, an empty record).
    Absorbed { consumed: usize },
    /// close_notify: nothing more will come.
    Closed { consumed: usize },
}

/// Both directions of a TLS 1.3 connection after its handshake.
pub struct Records {
    sending: Sealer,
    receiving: Opener,
    keys: Box<dyn KeySchedule>,
    /// A post-handshake handshake message received in part.
    handshake: Vec<u8>,
    /// Records to seal under one key.
    records_per_key: u64,
    /// The peer asked for a key update: keepmover's goes in front of its next record.
    key_update_owed: bool,
    empty_in_a_row: u32,
    key_updates_in_a_row: u32,
    warnings: u32,
}

impl Records {
    /// Takes over from rustls, given the secrets it extracted. The sending sequence must be 0
    /// (keepmover takes over before it sends any application data).
    pub fn new(
        sending: (u64, ConnectionTrafficSecrets),
        receiving: (u64, ConnectionTrafficSecrets),
        keys: Box<dyn KeySchedule>,
    ) -> Result<Records, Error> {
        if sending.0 != 0 {
            return Err(Error::General(
                "TLS records taken over after application data was sent".into(),
            ));
        }
        Ok(Records {
            sending: Sealer::new(&sending.1)?,
            receiving: Opener::new(&receiving.1, receiving.0)?,
            keys,
            handshake: Vec::new(),
            records_per_key: RECORDS_PER_KEY,
            key_update_owed: false,
            empty_in_a_row: 0,
            key_updates_in_a_row: 0,
            warnings: 0,
        })
    }

    /// Lowers the records sealed per key (tests reach the key update with a few records).
    pub fn set_records_per_key(&mut self, records: u64) {
        self.records_per_key = records.max(1);
    }

    /// Seals `plaintext` as application data into `out` after its first `*out_len` bytes, in
    /// records of at most 2^14 bytes, after the key update owed to the peer if any.
    pub fn seal(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        out_len: &mut usize,
    ) -> Result<(), Error> {
        if self.key_update_owed {
            self.update_sending_key(out, out_len)?;
            self.key_update_owed = false;
        }
        for piece in plaintext.chunks(MAX_PLAINTEXT) {
            if self.sending.seq >= self.records_per_key {
                self.update_sending_key(out, out_len)?;
            }
            self.sending
                .seal(piece, &[content::APPLICATION_DATA], out, out_len)?;
        }
        Ok(())
    }

    /// Sends a KeyUpdate (not asking for one back) under the current key, then moves on to
    /// the next.
    fn update_sending_key(&mut self, out: &mut Vec<u8>, out_len: &mut usize) -> Result<(), Error> {
        let message = [KEY_UPDATE, 0, 0, 1, UPDATE_NOT_REQUESTED];
        self.sending
            .seal(&message, &[content::HANDSHAKE], out, out_len)?;
        self.sending = Sealer::new(&self.keys.next_sending()?)?;
        Ok(())
    }

    /// Opens the record at the front of `cin`.
    pub fn open(&mut self, cin: &mut [u8]) -> Result<Opened, Error> {
        let Some((inner_type, content, consumed)) = self.receiving.open(cin)? else {
            return Ok(Opened::Incomplete);
        };
        if inner_type != content::HANDSHAKE && !self.handshake.is_empty() {
            return Err(InvalidMessage::UnexpectedMessage(
                "record between the pieces of a handshake message",
            )
            .into());
        }
        match inner_type {
            content::APPLICATION_DATA if content.is_empty() => {
                self.empty_in_a_row += 1;
                if self.empty_in_a_row > MAX_IDLE_RECORDS {
                    return Err(PeerMisbehaved::TooManyEmptyFragments.into());
                }
                Ok(Opened::Absorbed { consumed })
            }
            content::APPLICATION_DATA => {
                self.empty_in_a_row = 0;
                self.key_updates_in_a_row = 0;
                Ok(Opened::Data {
                    payload: content,
                    consumed,
                })
            }
            content::ALERT => match cin[content] {
                [WARNING | FATAL, CLOSE_NOTIFY] => Ok(Opened::Closed { consumed }),
                [WARNING, USER_CANCELED] => {
                    self.warnings += 1;
                    if self.warnings > MAX_WARNINGS {
                        return Err(PeerMisbehaved::TooManyWarningAlertsReceived.into());
                    }
                    Ok(Opened::Absorbed { consumed })
                }
                // Any other alert, and any alert of an unknown level, ends the connection.
                [_, description] => Err(Error::AlertReceived(AlertDescription::from(description))),
                _ => Err(InvalidMessage::MessageTooShort.into()),
            },
            content::HANDSHAKE if content.is_empty() => {
                Err(InvalidMessage::InvalidEmptyPayload.into())
            }
            content::HANDSHAKE => {
                self.handshake.extend_from_slice(&cin[content]);
                self.handshake_messages()?;
                Ok(Opened::Absorbed { consumed })
            }
            _ => Err(InvalidMessage::InvalidContentType.into()),
        }
    }

    /// Handles the complete handshake messages buffered; a partial one stays.
    fn handshake_messages(&mut self) -> Result<(), Error> {
        while let [kind, a, b, c, ..] = self.handshake[..] {
            let length = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if length > MAX_HANDSHAKE_MESSAGE {
                return Err(InvalidMessage::HandshakePayloadTooLarge.into());
            }
            // The buffer stays under a record past the largest message.
            let Some(body) = self.handshake.get(4..4 + length) else {
                break;
            };
            match kind {
                NEW_SESSION_TICKET => self.keys.session_ticket(body)?,
                KEY_UPDATE => {
                    let request = match body {
                        [request @ (UPDATE_NOT_REQUESTED | UPDATE_REQUESTED)] => *request,
                        _ => return Err(InvalidMessage::InvalidKeyUpdate.into()),
                    };
                    // The next record is under the new key: nothing of this one may follow.
                    if self.handshake.len() != 4 + length {
                        return Err(PeerMisbehaved::KeyEpochWithPendingFragment.into());
                    }
                    self.key_updates_in_a_row += 1;
                    if self.key_updates_in_a_row > MAX_IDLE_RECORDS {
                        return Err(PeerMisbehaved::TooManyKeyUpdateRequests.into());
                    }
                    self.receiving = Opener::new(&self.keys.next_receiving()?, 0)?;
                    // One answer however many requests come before keepmover sends again.
                    self.key_update_owed |= request == UPDATE_REQUESTED;
                }
                other => {
                    return Err(Error::InappropriateHandshakeMessage {
                        expect_types: vec![
                            HandshakeType::NewSessionTicket,
                            HandshakeType::KeyUpdate,
                        ],
                        got_type: HandshakeType::from(other),
                    })
                }
            }
            self.handshake.drain(..4 + length);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The record layer alone, with a stand-in key schedule (the peer's key updates need the
    //! next keys, which a real server's extracted secrets do not give). `tls_session.rs`
    //! tests it against rustls.

    use rustls::crypto::cipher::{AeadKey, Iv};

    use super::*;

    fn secret(epoch: u8) -> ConnectionTrafficSecrets {
        ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([epoch; 32]),
            iv: Iv::new([epoch; NONCE_LEN]),
        }
    }

    /// Receiving epochs 1, 2, ...; sending 101, 102, ...
    struct Epochs(u8, u8);

    impl KeySchedule for Epochs {
        fn next_sending(&mut self) -> Result<ConnectionTrafficSecrets, Error> {
            self.1 += 1;
            Ok(secret(self.1))
        }
        fn next_receiving(&mut self) -> Result<ConnectionTrafficSecrets, Error> {
            self.0 += 1;
            Ok(secret(self.0))
        }
        fn session_ticket(&mut self, _: &[u8]) -> Result<(), Error> {
            Ok(())
        }
    }

    fn records() -> Records {
        Records::new((0, secret(101)), (0, secret(1)), Box::new(Epochs(1, 101))).expect("records")
    }

    /// Opens every record of `wire` in turn: the data, and the first error.
    fn open_all(records: &mut Records, mut wire: Vec<u8>) -> (Vec<u8>, Result<(), Error>) {
        let (mut got, mut at) = (Vec::new(), 0);
        while at < wire.len() {
            match records.open(&mut wire[at..]) {
                Ok(Opened::Data { payload, consumed }) => {
                    got.extend_from_slice(&wire[at + payload.start..at + payload.end]);
                    at += consumed;
                }
                Ok(Opened::Absorbed { consumed } | Opened::Closed { consumed }) => at += consumed,
                Ok(Opened::Incomplete) => return (got, Err(Error::General("incomplete".into()))),
                Err(e) => return (got, Err(e)),
            }
        }
        (got, Ok(()))
    }

    /// The peer's records: (inner type, payload); a whole key update moves its key on.
    fn peer_records(messages: &[(u8, &[u8])]) -> Vec<u8> {
        let (mut epoch, mut out, mut len) = (1, Vec::new(), 0);
        let mut sealer = Sealer::new(&secret(epoch)).expect("sealer");
        for (inner, payload) in messages {
            sealer
                .seal(payload, &[*inner], &mut out, &mut len)
                .expect("seal");
            // A whole KeyUpdate in one record (pieces of one are not followed by data here).
            if *inner == content::HANDSHAKE && payload.len() == 5 && payload[0] == KEY_UPDATE {
                epoch += 1;
                sealer = Sealer::new(&secret(epoch)).expect("sealer");
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn key_updates_move_the_receiving_key_on_and_a_flood_of_them_is_cut_off() {
        let update: &[u8] = &[KEY_UPDATE, 0, 0, 1, UPDATE_NOT_REQUESTED];
        let mut messages = vec![(content::HANDSHAKE, update); 3];
        messages.push((content::APPLICATION_DATA, b"data"));
        let (got, verdict) = open_all(&mut records(), peer_records(&messages));
        assert_eq!(got, b"data");
        verdict.expect("three key updates");

        let flood = vec![(content::HANDSHAKE, update); 33];
        let (_, verdict) = open_all(&mut records(), peer_records(&flood));
        assert!(matches!(
            verdict,
            Err(Error::PeerMisbehaved(
                PeerMisbehaved::TooManyKeyUpdateRequests
            ))
        ));
    }

    #[test]
    fn requested_key_updates_are_answered_once_in_front_of_the_next_data() {
        let request: &[u8] = &[KEY_UPDATE, 0, 0, 1, UPDATE_REQUESTED];
        let mut records = records();
        let (_, verdict) = open_all(
            &mut records,
            peer_records(&[(content::HANDSHAKE, request); 2]),
        );
        verdict.expect("two requests");
        let (mut out, mut len) = (Vec::new(), 0);
        records.seal(b"request", &mut out, &mut len).expect("seal");
        // One KeyUpdate record (5 + 5 + 1 + 16), then the data (5 + 7 + 1 + 16).
        assert_eq!(len, 27 + 29);
        records.seal(b"more", &mut out, &mut len).expect("seal");
        assert_eq!(len, 27 + 29 + 26);
        // The peer's side reads it all: the update, then the data under the next key.
        let mut peer =
            Records::new((0, secret(1)), (0, secret(101)), Box::new(Epochs(101, 1))).expect("peer");
        out.truncate(len);
        let (got, verdict) = open_all(&mut peer, out);
        verdict.expect("peer reads");
        assert_eq!(got, b"requestmore");
    }

    #[test]
    fn a_key_update_may_be_cut_across_records_but_a_huge_message_is_refused() {
        let (got, verdict) = open_all(
            &mut records(),
            peer_records(&[
                (content::HANDSHAKE, &[KEY_UPDATE, 0]),
                (content::HANDSHAKE, &[0, 1, UPDATE_NOT_REQUESTED]),
            ]),
        );
        assert!(got.is_empty());
        verdict.expect("a key update in two pieces");
        let huge: &[u8] = &[NEW_SESSION_TICKET, 1, 0, 1];
        let (_, verdict) = open_all(&mut records(), peer_records(&[(content::HANDSHAKE, huge)]));
        assert!(matches!(
            verdict,
            Err(Error::InvalidMessage(
                InvalidMessage::HandshakePayloadTooLarge
            ))
        ));
    }

    #[test]
    fn a_hand_over_after_application_data_was_sealed_is_refused() {
        let taken = Records::new((1, secret(101)), (0, secret(1)), Box::new(Epochs(1, 101)));
        assert!(taken.is_err());
    }
}
