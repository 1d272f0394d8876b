//! TLS 1.3 application records after the handshake, sealed and opened here with aws-lc's
//! AES-GCM (through aws-lc-rs, and `gcm_open.rs` for opening into a block) while rustls keeps
//! the keys. No I/O.
//!
//! Why: rustls 0.23 makes three passes over the bytes of a copy over HTTPS that the cipher
//! does not need. Sealing copies each record's plaintext into a scratch, encrypts it there
//! and copies the sealed record into our send buffer. Opening decrypts in place and then
//! copies the record into a `Vec` it hands out. Here a record is sealed straight from the
//! caller's bytes into the send buffer (`seal_out_of_place_scatter`, with the inner
//! content-type byte as its extra input), and opened straight from the receive buffer into
//! the caller's destination where it fits in its spare capacity ([`Records::open_into`],
//! through `gcm_open.rs`), else in place in the receive buffer and copied once.
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

use crate::net::gcm_open::GcmOpenKey;

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

/// The alert that tells the peer what was wrong with its records (RFC 8446 §5.2, §6.2);
/// none when the peer ended the session with an alert of its own.
pub fn alert_for(err: &Error) -> Option<AlertDescription> {
    Some(match err {
        Error::AlertReceived(_) => return None,
        Error::DecryptError => AlertDescription::BadRecordMac,
        Error::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
        // Too long a record (§5.2), a content type that has no business here (§5), and a
        // KeyUpdate asking for neither value (§4.6.3) have alerts of their own.
        Error::InvalidMessage(InvalidMessage::MessageTooLarge) => AlertDescription::RecordOverflow,
        Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnexpectedMessage(_),
        ) => AlertDescription::UnexpectedMessage,
        Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate) => {
            AlertDescription::IllegalParameter
        }
        Error::InvalidMessage(m) => AlertDescription::from(*m),
        Error::PeerMisbehaved(_) | Error::InappropriateHandshakeMessage { .. } => {
            AlertDescription::UnexpectedMessage
        }
        _ => AlertDescription::InternalError,
    })
}

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
fn nonce_bytes(iv: &[u8; NONCE_LEN], seq: u64) -> [u8; NONCE_LEN] {
    let mut nonce = *iv;
    for (byte, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
        *byte ^= s;
    }
    nonce
}

fn nonce(iv: &[u8; NONCE_LEN], seq: u64) -> Nonce {
    Nonce::assume_unique_for_key(nonce_bytes(iv, seq))
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
    /// The same key, for opening into a destination's spare capacity.
    into: GcmOpenKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

/// A complete, well-framed record at the front of `cin`: its header and ciphertext length
/// (tag included), or `None` until it is all there.
fn frame(cin: &[u8]) -> Result<Option<([u8; HEADER], usize)>, Error> {
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
            return Err(
                InvalidMessage::UnexpectedMessage("plaintext record after the handshake").into(),
            )
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
    if cin.len() < HEADER + length {
        return Ok(None);
    }
    Ok(Some((header, length)))
}

/// A TLSInnerPlaintext (the content, its type, zero padding; at most 2^14 + 1 bytes, §5.4):
/// its content type and the content's length. The type is the last non-zero byte.
fn inner_plaintext(plaintext: &[u8]) -> Result<(u8, usize), Error> {
    if plaintext.len() > MAX_PLAINTEXT + 1 {
        return Err(Error::PeerSentOversizedRecord);
    }
    match plaintext.iter().rposition(|&b| b != 0) {
        Some(type_at) => Ok((plaintext[type_at], type_at)),
        None => Err(PeerMisbehaved::IllegalTlsInnerPlaintext.into()),
    }
}

impl Opener {
    fn new(secrets: &ConnectionTrafficSecrets, seq: u64) -> Result<Opener, Error> {
        let (algorithm, key, iv) = aead(secrets).ok_or_else(unsupported)?;
        Ok(Opener {
            key: LessSafeKey::new(UnboundKey::new(algorithm, key).map_err(|_| unsupported())?),
            into: GcmOpenKey::new(key).map_err(|_| unsupported())?,
            iv: iv_of(iv)?,
            seq,
        })
    }

    /// The next record's nonce; the sequence moves on.
    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], Error> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Error::DecryptError)?;
        Ok(nonce_bytes(&self.iv, seq))
    }

    /// Opens the record framed at the front of `cin` in place: its inner content type and its
    /// content's range in `cin`.
    fn open(
        &mut self,
        cin: &mut [u8],
        header: [u8; HEADER],
        length: usize,
    ) -> Result<(u8, Range<usize>), Error> {
        let nonce = Nonce::assume_unique_for_key(self.next_nonce()?);
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(header), &mut cin[HEADER..HEADER + length])
            .map_err(|_| Error::DecryptError)?;
        let (inner_type, content_len) = inner_plaintext(plaintext)?;
        Ok((inner_type, HEADER..HEADER + content_len))
    }

    /// Opens the record framed at the front of `cin` into the spare capacity of `dest`,
    /// which must hold its inner plaintext: appends its content (`dest` grows by the
    /// content's length) and returns its inner content type. `dest` is as it was on an error.
    fn open_into(
        &mut self,
        cin: &[u8],
        header: [u8; HEADER],
        length: usize,
        dest: &mut Vec<u8>,
    ) -> Result<u8, Error> {
        let nonce = self.next_nonce()?;
        let (ciphertext, tag) = cin[HEADER..HEADER + length].split_at(length - TAG);
        let tag: &[u8; TAG] = tag.try_into().map_err(|_| Error::DecryptError)?;
        let start = dest.len();
        self.into
            .open_into(&nonce, &header, ciphertext, tag, dest)
            .map_err(|_| Error::DecryptError)?;
        match inner_plaintext(&dest[start..]) {
            Ok((inner_type, content_len)) => {
                dest.truncate(start + content_len);
                Ok(inner_type)
            }
            Err(e) => {
                dest.truncate(start);
                Err(e)
            }
        }
    }
}

/// Appends `plaintext` to `dest`, at most `limit` bytes and never past its capacity (it is
/// not reallocated); the rest goes to `overflow`.
pub fn append_within(plaintext: &[u8], dest: &mut Vec<u8>, limit: usize, overflow: &mut Vec<u8>) {
    let keep = plaintext.len().min(limit).min(dest.capacity() - dest.len());
    dest.extend_from_slice(&plaintext[..keep]);
    overflow.extend_from_slice(&plaintext[keep..]);
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
    /// Application data appended to the caller's destination ([`Records::open_into`]), what
    /// did not fit in its overflow; `consumed` bytes of the buffer are done with.
    Appended { consumed: usize },
    /// A record for the session itself (a ticket, a key update, an empty record).
    Absorbed { consumed: usize },
    /// close_notify: nothing more will come.
    Closed { consumed: usize },
}

/// What an opened record is to the session.
enum Taken {
    Data,
    Absorbed,
    Closed,
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

    /// Seals a fatal alert saying why the connection ends (RFC 8446 §6.2), if `err` is one
    /// keepmover found in the peer's records; none for an alert the peer sent. The caller
    /// sends it, then closes.
    pub fn seal_fatal_alert(
        &mut self,
        err: &Error,
        out: &mut Vec<u8>,
        out_len: &mut usize,
    ) -> Result<(), Error> {
        let Some(description) = alert_for(err) else {
            return Ok(());
        };
        let fatal = 2;
        self.sending.seal(
            &[fatal, u8::from(description)],
            &[content::ALERT],
            out,
            out_len,
        )
    }

    /// Opens the record at the front of `cin` (in place).
    pub fn open(&mut self, cin: &mut [u8]) -> Result<Opened, Error> {
        match frame(cin)? {
            Some((header, length)) => self.open_framed(cin, header, length),
            None => Ok(Opened::Incomplete),
        }
    }

    /// Opens in place the record [`frame`] found at the front of `cin`.
    fn open_framed(
        &mut self,
        cin: &mut [u8],
        header: [u8; HEADER],
        length: usize,
    ) -> Result<Opened, Error> {
        let consumed = HEADER + length;
        let (inner_type, content) = self.receiving.open(cin, header, length)?;
        Ok(match self.take(inner_type, &cin[content.clone()])? {
            Taken::Data => Opened::Data {
                payload: content,
                consumed,
            },
            Taken::Absorbed => Opened::Absorbed { consumed },
            Taken::Closed => Opened::Closed { consumed },
        })
    }

    /// Opens the record at the front of `cin`, and appends its application data to `dest`
    /// (at most `limit` bytes, never past its capacity; the rest to `overflow`). Where the
    /// record's inner plaintext fits in the spare capacity of `dest`, it is opened straight
    /// into it: each byte written once, with no copy out of `cin`.
    pub fn open_into(
        &mut self,
        cin: &mut [u8],
        dest: &mut Vec<u8>,
        limit: usize,
        overflow: &mut Vec<u8>,
    ) -> Result<Opened, Error> {
        let Some((header, length)) = frame(cin)? else {
            return Ok(Opened::Incomplete);
        };
        let consumed = HEADER + length;
        if dest.capacity() - dest.len() < length - TAG {
            return Ok(match self.open_framed(cin, header, length)? {
                Opened::Data { payload, consumed } => {
                    append_within(&cin[payload], dest, limit, overflow);
                    Opened::Appended { consumed }
                }
                other => other,
            });
        }
        let start = dest.len();
        let inner_type = self.receiving.open_into(cin, header, length, dest)?;
        let taken = self.take(inner_type, &dest[start..]);
        if !matches!(taken, Ok(Taken::Data)) {
            dest.truncate(start);
        }
        Ok(match taken? {
            Taken::Data => {
                let keep = start + limit.min(dest.len() - start);
                overflow.extend_from_slice(&dest[keep..]);
                dest.truncate(keep);
                Opened::Appended { consumed }
            }
            Taken::Absorbed => Opened::Absorbed { consumed },
            Taken::Closed => Opened::Closed { consumed },
        })
    }

    /// What an opened record of `inner_type` with `content` means for the session.
    fn take(&mut self, inner_type: u8, content: &[u8]) -> Result<Taken, Error> {
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
                Ok(Taken::Absorbed)
            }
            content::APPLICATION_DATA => {
                self.empty_in_a_row = 0;
                self.key_updates_in_a_row = 0;
                Ok(Taken::Data)
            }
            content::ALERT => match content {
                [WARNING | FATAL, CLOSE_NOTIFY] => Ok(Taken::Closed),
                [WARNING, USER_CANCELED] => {
                    self.warnings += 1;
                    if self.warnings > MAX_WARNINGS {
                        return Err(PeerMisbehaved::TooManyWarningAlertsReceived.into());
                    }
                    Ok(Taken::Absorbed)
                }
                // Any other alert, and any alert of an unknown level, ends the connection.
                [_, description] => Err(Error::AlertReceived(AlertDescription::from(*description))),
                _ => Err(InvalidMessage::MessageTooShort.into()),
            },
            content::HANDSHAKE if content.is_empty() => {
                Err(InvalidMessage::InvalidEmptyPayload.into())
            }
            content::HANDSHAKE => {
                self.handshake.extend_from_slice(content);
                self.handshake_messages()?;
                Ok(Taken::Absorbed)
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
                Ok(Opened::Appended { .. }) => panic!("open appends nowhere"),
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

    /// Opens every record of `wire` in turn with [`Records::open_into`], as a connection
    /// reads a body: into a destination of `capacity` (emptied into the result whenever less
    /// than a record's room is left), at most `limit` bytes a call, the overflow after it.
    fn open_all_into(
        records: &mut Records,
        mut wire: Vec<u8>,
        capacity: usize,
        limit: usize,
    ) -> (Vec<u8>, Result<(), Error>) {
        let (mut got, mut at) = (Vec::new(), 0);
        let mut dest = Vec::with_capacity(capacity);
        let mut overflow = Vec::new();
        while at < wire.len() {
            let before = dest.clone();
            let opened = records.open_into(&mut wire[at..], &mut dest, limit, &mut overflow);
            assert!(
                dest.len() <= before.len().saturating_add(limit) && dest.capacity() == capacity
            );
            assert!(
                dest.starts_with(&before),
                "what was in the destination stays"
            );
            match opened {
                Ok(Opened::Appended { consumed }) => at += consumed,
                Ok(Opened::Absorbed { consumed } | Opened::Closed { consumed }) => {
                    assert_eq!((dest.len(), overflow.len()), (before.len(), 0));
                    at += consumed;
                }
                Ok(Opened::Data { .. }) => panic!("open_into hands out no ranges"),
                Ok(Opened::Incomplete) => return (got, Err(Error::General("incomplete".into()))),
                Err(e) => {
                    assert!(dest == before, "an error leaves the destination as it was");
                    return (got, Err(e));
                }
            }
            if !overflow.is_empty() || dest.capacity() - dest.len() < 4000 {
                got.append(&mut dest);
                got.append(&mut overflow);
            }
        }
        got.append(&mut dest);
        (got, Ok(()))
    }

    /// Data of every size around a record's, padding, empty records, tickets, key updates
    /// (whole and in pieces), a warning and close_notify: opened in place, and into
    /// destinations with room for every record, for some, and with small limits, the same.
    #[test]
    fn records_opened_into_a_destination_read_as_those_opened_in_place() {
        let full: Vec<u8> = (0..MAX_PLAINTEXT as u32)
            .map(|i| (i % 249) as u8 + 1)
            .collect();
        let update: &[u8] = &[KEY_UPDATE, 0, 0, 1, UPDATE_REQUESTED];
        let ticket: &[u8] = &[NEW_SESSION_TICKET, 0, 0, 3, 1, 2, 3];
        let mut messages: Vec<(u8, &[u8])> = vec![
            (content::APPLICATION_DATA, b"first"),
            (content::APPLICATION_DATA, &full),
            (content::APPLICATION_DATA, b""),
            (content::HANDSHAKE, ticket),
            (content::APPLICATION_DATA, &full[..MAX_PLAINTEXT - 1]),
            (content::HANDSHAKE, update),
            (content::APPLICATION_DATA, &full[7..]),
            (content::HANDSHAKE, &update[..2]),
            (content::HANDSHAKE, &update[2..]),
            (content::ALERT, &[WARNING, USER_CANCELED]),
            (content::APPLICATION_DATA, &full[..1]),
        ];
        for size in [1, 100, 4000, 9000, MAX_PLAINTEXT] {
            messages.push((content::APPLICATION_DATA, &full[..size]));
        }
        messages.push((content::ALERT, &[WARNING, CLOSE_NOTIFY]));
        // Padding on some records: the peer's sealer takes the trailer as given.
        let mut wire = Vec::new();
        let (mut epoch, mut len) = (1, 0);
        let mut sealer = Sealer::new(&secret(epoch)).expect("sealer");
        for (i, (inner, payload)) in messages.iter().enumerate() {
            let padding = if i % 3 == 0 && payload.len() < 9000 {
                40
            } else {
                0
            };
            let mut trailer = vec![0u8; 1 + padding];
            trailer[0] = *inner;
            sealer
                .seal(payload, &trailer, &mut wire, &mut len)
                .expect("seal");
            if payload.len() == 3 && *inner == content::HANDSHAKE || *payload == update {
                epoch += 1;
                sealer = Sealer::new(&secret(epoch)).expect("sealer");
            }
        }
        wire.truncate(len);

        let (want, verdict) = open_all(&mut records(), wire.clone());
        verdict.expect("in place");
        let data = messages
            .iter()
            .filter(|(inner, _)| *inner == content::APPLICATION_DATA);
        assert_eq!(
            want.len(),
            data.map(|(_, payload)| payload.len()).sum::<usize>()
        );
        for (capacity, limit) in [
            (1 << 20, usize::MAX),
            (MAX_PLAINTEXT + 1, usize::MAX),
            (MAX_PLAINTEXT + 1 + 3000, usize::MAX),
            (1 << 20, 1),
            (1 << 20, 5000),
            (20_000, 9999),
        ] {
            let (got, verdict) = open_all_into(&mut records(), wire.clone(), capacity, limit);
            verdict.expect("into a destination");
            assert!(got == want, "capacity {capacity}, limit {limit}");
        }
    }

    /// What is refused in place is refused when opened into a destination, which keeps its
    /// length: a flipped bit, an inner plaintext of zeros, one over 2^14 + 1 bytes, an alert.
    #[test]
    fn records_refused_when_opened_into_a_destination_leave_it_as_it_was() {
        let full = vec![1u8; MAX_PLAINTEXT];
        let mut flipped = peer_records(&[(content::APPLICATION_DATA, b"data")]);
        flipped[7] ^= 1;
        let zeros = peer_records(&[(0, b"\0\0")]);
        type Expected = fn(&Error) -> bool;
        let cases: [(Vec<u8>, Expected); 4] = [
            (flipped, |e| matches!(e, Error::DecryptError)),
            (zeros, |e| {
                matches!(
                    e,
                    Error::PeerMisbehaved(PeerMisbehaved::IllegalTlsInnerPlaintext)
                )
            }),
            (peer_records(&[(content::ALERT, &[FATAL, 40])]), |e| {
                matches!(e, Error::AlertReceived(AlertDescription::HandshakeFailure))
            }),
            (
                peer_records(&[
                    (content::HANDSHAKE, &[NEW_SESSION_TICKET, 0]),
                    (content::APPLICATION_DATA, b"between"),
                ]),
                |e| {
                    matches!(
                        e,
                        Error::InvalidMessage(InvalidMessage::UnexpectedMessage(_))
                    )
                },
            ),
        ];
        for (wire, expected) in cases {
            for capacity in [1 << 20, 3] {
                let mut dest = Vec::with_capacity(capacity);
                dest.extend_from_slice(b"abc"[..capacity.min(3)].as_ref());
                let mut overflow = Vec::new();
                let (mut records, mut at) = (records(), 0);
                let error = loop {
                    match records.open_into(&mut wire.clone()[at..], &mut dest, 100, &mut overflow)
                    {
                        Ok(Opened::Absorbed { consumed }) => at += consumed,
                        Err(e) => break e,
                        other => panic!("{other:?}"),
                    }
                };
                assert!(expected(&error), "{error:?}");
                assert_eq!((&dest[..], overflow.len()), (&b"abc"[..capacity.min(3)], 0));
            }
        }
        // The sealed inner plaintext of `full` with a type byte and a zero is 2^14 + 2 bytes.
        let mut sealer = Sealer::new(&secret(1)).expect("sealer");
        let (mut wire, mut len) = (Vec::new(), 0);
        sealer
            .seal(&full, &[content::APPLICATION_DATA, 0], &mut wire, &mut len)
            .expect("seal");
        let mut dest = Vec::with_capacity(1 << 20);
        let refused = records().open_into(&mut wire[..len], &mut dest, usize::MAX, &mut Vec::new());
        assert!(
            matches!(refused, Err(Error::PeerSentOversizedRecord)),
            "{refused:?}"
        );
        assert!(dest.is_empty());
    }

    /// A small deterministic generator (xorshift) for the differential test.
    struct Dice(u64);

    impl Dice {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A random run of records: data of 0 to 2^14 bytes, padding, alerts, key updates,
    /// ticket fragments, unknown inner types, and now and then a flipped bit.
    fn random_wire(dice: &mut Dice) -> Vec<u8> {
        let payload: Vec<u8> = (0..MAX_PLAINTEXT as u32 + 300)
            .map(|i| (i % 247) as u8 + 1)
            .collect();
        let (mut wire, mut len, mut epoch) = (Vec::new(), 0, 1);
        let mut sealer = Sealer::new(&secret(epoch)).expect("sealer");
        for _ in 0..1 + dice.below(12) {
            let sizes = [
                0,
                1,
                17,
                MAX_PLAINTEXT - 1,
                MAX_PLAINTEXT,
                dice.below(MAX_PLAINTEXT),
            ];
            let (inner, body): (u8, &[u8]) = match dice.below(10) {
                0 => (
                    content::ALERT,
                    [
                        &[WARNING, CLOSE_NOTIFY][..],
                        &[WARNING, USER_CANCELED],
                        &[FATAL, 20],
                    ][dice.below(3)],
                ),
                1 => (
                    content::HANDSHAKE,
                    &[KEY_UPDATE, 0, 0, 1, (dice.below(2)) as u8],
                ),
                2 => (
                    content::HANDSHAKE,
                    &[NEW_SESSION_TICKET, 0, 0, 9, 1, 2][..2 + dice.below(5)],
                ),
                3 => (dice.below(30) as u8, &payload[..dice.below(40)]),
                _ => (
                    content::APPLICATION_DATA,
                    &payload[..sizes[dice.below(sizes.len())]],
                ),
            };
            let padding = [0, 0, 0, 1, 300][dice.below(5)];
            let mut trailer = vec![0u8; 1 + padding];
            trailer[0] = inner;
            let body = &body[..body.len().min(MAX_CIPHERTEXT - TAG - trailer.len())];
            sealer
                .seal(body, &trailer, &mut wire, &mut len)
                .expect("seal");
            if inner == content::HANDSHAKE && body.len() == 5 && body[0] == KEY_UPDATE {
                epoch += 1;
                sealer = Sealer::new(&secret(epoch)).expect("sealer");
            }
        }
        wire.truncate(len);
        if dice.below(8) == 0 {
            let at = dice.below(wire.len());
            wire[at] ^= 1 << dice.below(8);
        }
        wire
    }

    /// `open` and `open_into` record by record on the same random wires, into destinations of
    /// every capacity around a record's and with every kind of limit, already holding bytes:
    /// the same outcome each time (variant, bytes consumed, data, error), the data split
    /// between the destination and the overflow as the capacity and the limit say, both
    /// untouched by anything but data, and a record that fits opened straight into the
    /// destination (its ciphertext left as it was, where `open` decrypts in place).
    #[test]
    fn open_into_does_what_open_does_record_by_record() {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        for _ in 0..400 {
            let wire = random_wire(&mut dice);
            let capacity = [
                1,
                100,
                MAX_PLAINTEXT,
                MAX_PLAINTEXT + 1,
                MAX_PLAINTEXT + 2,
                1 << 20,
            ][dice.below(6)];
            let limit = [1, 10, 9000, MAX_PLAINTEXT, usize::MAX][dice.below(5)];
            let (mut in_place, mut into) = (records(), records());
            let (mut a, mut b) = (wire.clone(), wire.clone());
            let mut dest = Vec::with_capacity(capacity);
            dest.extend_from_slice(&b"prefix"[..capacity.min(6).min(dice.below(7))]);
            let mut overflow = b"earlier".to_vec();
            let mut at = 0;
            while at < wire.len() {
                let (dest_before, overflow_before) = (dest.clone(), overflow.clone());
                let record_before = b[at..].to_vec();
                let spare = dest.capacity() - dest.len();
                let want = in_place.open(&mut a[at..]);
                let got = into.open_into(&mut b[at..], &mut dest, limit, &mut overflow);
                assert_eq!(dest.capacity(), capacity, "never reallocated");
                match (&want, &got) {
                    (
                        Ok(Opened::Data { payload, consumed }),
                        Ok(Opened::Appended { consumed: c }),
                    ) => {
                        assert_eq!(consumed, c);
                        let data = &a[at + payload.start..at + payload.end];
                        let kept = data.len().min(limit).min(spare);
                        assert_eq!(dest.len(), dest_before.len() + kept);
                        assert!(dest[..dest_before.len()] == dest_before[..]);
                        assert!(dest[dest_before.len()..] == data[..kept]);
                        assert!(overflow[..overflow_before.len()] == overflow_before[..]);
                        assert!(overflow[overflow_before.len()..] == data[kept..]);
                        if spare >= consumed - HEADER - TAG {
                            assert!(
                                b[at..at + consumed] == record_before[..*consumed],
                                "opened straight into the destination"
                            );
                        }
                        at += consumed;
                    }
                    (Ok(Opened::Absorbed { consumed }), Ok(Opened::Absorbed { consumed: c }))
                    | (Ok(Opened::Closed { consumed }), Ok(Opened::Closed { consumed: c })) => {
                        assert_eq!(consumed, c);
                        assert!(dest == dest_before && overflow == overflow_before);
                        at += consumed;
                    }
                    (Err(e), Err(f)) => {
                        assert_eq!(format!("{e:?}"), format!("{f:?}"));
                        assert!(dest == dest_before && overflow == overflow_before);
                        break;
                    }
                    (Ok(Opened::Incomplete), Ok(Opened::Incomplete)) => break,
                    _ => panic!("open: {want:?}, open_into: {got:?}"),
                }
                if matches!(want, Ok(Opened::Closed { .. })) {
                    break;
                }
            }
        }
    }

    #[test]
    fn a_hand_over_after_application_data_was_sealed_is_refused() {
        let taken = Records::new((1, secret(101)), (0, secret(1)), Box::new(Epochs(1, 101)));
        assert!(taken.is_err());
    }
}
