//! The TLS half of a connection, without I/O: a rustls *unbuffered* client session plus the
//! two buffers it works in, both ours. `conn.rs` does the socket reads and writes (with its
//! timeouts and cancellation) and asks this module what to do next.
//!
//! Why the unbuffered API rather than `rustls::ClientConnection`: the buffered API copies all
//! received ciphertext into its own deframer buffer (`read_tls`) and hands sealed records
//! over through another copy (`write_tls`). Here ciphertext is read straight into `cin`,
//! where rustls decrypts it in place, and records are sealed straight into `out`, which goes
//! to the socket as is. What is left in rustls 0.23: sealing copies each record's plaintext
//! into a record-sized scratch before encrypting it, and a decrypted record is copied into
//! a `Vec` that [`ReadTraffic::next_record`] hands out, from which the caller copies once
//! more into its destination. So once the handshake is done, a TLS 1.3 AES-GCM session is
//! handed over to keepmover's own record layer (`tls_records.rs`), which has neither copy;
//! the same events come out of it, and the buffers keep their rules.
//!
//! Buffer rules (the unbuffered API's contract):
//! * `cin[start..]` is what rustls has not yet told us to discard: a partial record, or
//!   handshake fragments it decrypted in place and still refers to by offset from the front
//!   of the slice it is given. So every call gets `&mut cin[start..]`, and compaction moves
//!   that region as a whole (offsets from its front are unchanged).
//! * `out[..out_len]` holds sealed bytes not yet sent; `out` stays fully initialised (its
//!   `len` is its size), so sealing into it needs no zero-fill per batch.

use rustls::client::UnbufferedClientConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{CipherSuite, ProtocolVersion};

use crate::net::tls_records::{append_within, Opened, Records};

/// Ciphertext read size, and the receive buffer's size.
pub(crate) const CIPHER_READ: usize = 256 << 10;
/// The largest TLS record on the wire (2^14 plaintext + 2048 expansion allowed by TLS 1.2,
/// + 5 header bytes). After compaction the receive buffer always has room for one.
const MAX_RECORD: usize = (16 << 10) + 2048 + 5;
/// Plaintext sealed per batch before one socket write (records are at most 16 KiB each).
pub(crate) const SEAL_BATCH: usize = 256 << 10;
/// Sealing overhead allowance per 16 KiB record (header 5 + explicit nonce 8 + tag 16 +
/// content type 1, rounded up); the exact figure comes back from rustls if it is short.
const RECORD_OVERHEAD: usize = 64;

/// What the session needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Sealed bytes wait in the send buffer ([`TlsSession::outgoing`]); send them (or keep
    /// adding to them), then call again.
    Send,
    /// No complete record is buffered: read more ciphertext ([`TlsSession::read_room`]).
    NeedInput,
    /// One application-data record was decrypted and handed to the sink.
    Data,
    /// The handshake is done and nothing is pending (reading now needs more input).
    Idle,
    /// The peer closed the TLS session (close_notify): no more data will come.
    PeerClosed,
    /// The plaintext given to [`TlsSession::seal`] is sealed into the send buffer.
    Sealed,
}

/// Who protects the records: rustls through the handshake (and for the sessions keepmover
/// does not take over), then keepmover's own record layer ([`Records`]).
enum Engine {
    Rustls(Box<UnbufferedClientConnection>),
    Records(Box<Records>),
    /// Only while rustls hands over (a failed hand-over leaves the session dead).
    HandingOver,
}

/// Whether keepmover seals and opens TLS 1.3 AES-GCM records itself (aws-lc-rs); with the
/// `tls-ring` feature rustls does it all on ring.
pub(crate) const OWN_RECORDS: bool = cfg!(not(feature = "tls-ring"));

pub(crate) struct TlsSession {
    engine: Engine,
    /// Ciphertext received: `cin[start..]` not discarded yet.
    cin: Vec<u8>,
    start: usize,
    /// Sealed bytes to send: `out[..out_len]` (`out` is initialised to its full length).
    out: Vec<u8>,
    out_len: usize,
    peer_closed: bool,
}

impl TlsSession {
    pub(crate) fn new(session: UnbufferedClientConnection) -> TlsSession {
        TlsSession {
            engine: Engine::Rustls(Box::new(session)),
            cin: Vec::with_capacity(CIPHER_READ),
            start: 0,
            out: Vec::new(),
            out_len: 0,
            peer_closed: false,
        }
    }

    /// Whether a close_notify was received.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Ciphertext received that rustls has not discarded (a partial record, at most).
    pub(crate) fn undiscarded(&self) -> usize {
        self.cin.len() - self.start
    }

    /// Sealed bytes waiting to be sent.
    pub(crate) fn outgoing(&self) -> usize {
        self.out_len
    }

    /// Lends the send buffer: its first `len` bytes are to be sent. If the send is abandoned
    /// (its future dropped), the session is left with an empty send buffer, still consistent.
    pub(crate) fn take_out(&mut self) -> (Vec<u8>, usize) {
        let len = std::mem::take(&mut self.out_len);
        (std::mem::take(&mut self.out), len)
    }

    /// Returns the send buffer after its bytes were sent (or failed to be: the connection is
    /// then dead anyway).
    pub(crate) fn restore_out(&mut self, out: Vec<u8>) {
        self.out = out;
        self.out_len = 0;
    }

    /// Makes room for the next socket read at the end of the receive buffer and lends the
    /// buffer: the read goes to `cin[cin.len()..cin.capacity()]`; `cin[start..]` is kept.
    /// Give both back with [`restore_cin`](Self::restore_cin). If the read is abandoned, the
    /// session is left with an empty receive buffer, still consistent.
    pub(crate) fn take_cin_for_read(&mut self) -> (Vec<u8>, usize) {
        if self.start == self.cin.len() {
            self.cin.clear();
            self.start = 0;
        } else if self.cin.capacity() - self.cin.len() < MAX_RECORD {
            // Keep the undiscarded tail (offsets from its front stay valid), drop the rest.
            let len = self.cin.len();
            self.cin.copy_within(self.start..len, 0);
            self.cin.truncate(len - self.start);
            self.start = 0;
        }
        let want = CIPHER_READ.max(self.cin.len() + MAX_RECORD);
        if self.cin.capacity() < want {
            self.cin.reserve(want - self.cin.len());
        }
        (
            std::mem::take(&mut self.cin),
            std::mem::take(&mut self.start),
        )
    }

    /// Returns the receive buffer after a read (its `len` now includes what was read).
    pub(crate) fn restore_cin(&mut self, cin: Vec<u8>, start: usize) {
        self.cin = cin;
        self.start = start.min(self.cin.len());
    }

    /// Appends ciphertext received outside [`take_cin_for_read`](Self::take_cin_for_read)
    /// (the idle check's non-blocking reads).
    pub(crate) fn push_ciphertext(&mut self, bytes: &[u8]) {
        if self.start == self.cin.len() {
            self.cin.clear();
            self.start = 0;
        }
        self.cin.extend_from_slice(bytes);
    }

    /// Processes what is buffered until something needs the caller: handshake records are
    /// encoded into the send buffer, one application-data record (if any) goes to `sink`.
    pub(crate) fn advance(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<Event, rustls::Error> {
        self.advance_to(Deliver::Sink(sink))
    }

    /// [`advance`](Self::advance), the application data (one record's) appended to `dest`:
    /// at most `limit` bytes, never past its capacity, the rest to `overflow`. keepmover's
    /// record layer opens a record that fits straight into `dest`'s spare capacity.
    pub(crate) fn advance_into(
        &mut self,
        dest: &mut Vec<u8>,
        limit: usize,
        overflow: &mut Vec<u8>,
    ) -> Result<Event, rustls::Error> {
        self.advance_to(Deliver::Into {
            dest,
            limit,
            overflow,
        })
    }

    fn advance_to(&mut self, mut deliver: Deliver<'_>) -> Result<Event, rustls::Error> {
        if let Engine::Records(records) = &mut self.engine {
            return open_records(
                records,
                &mut self.cin,
                &mut self.start,
                &mut self.peer_closed,
                deliver,
            );
        }
        let event = match &mut deliver {
            Deliver::Sink(sink) => self.step(*sink, None)?,
            Deliver::Into {
                dest,
                limit,
                overflow,
            } => self.step(
                &mut |plain| {
                    let before = dest.len();
                    append_within(plain, dest, *limit, overflow);
                    *limit -= dest.len() - before;
                },
                None,
            )?,
        };
        if event == Event::Idle {
            // The handshake is done and nothing waits: keepmover's records from here on.
            self.take_over_records()?;
        }
        Ok(event)
    }

    /// Whether keepmover's record layer protects this session now.
    #[cfg(test)]
    pub(crate) fn own_records(&self) -> bool {
        matches!(self.engine, Engine::Records(_))
    }

    /// Hands a TLS 1.3 AES-GCM session over from rustls to [`Records`] (no-op otherwise).
    fn take_over_records(&mut self) -> Result<(), rustls::Error> {
        let Engine::Rustls(session) = &self.engine else {
            return Ok(());
        };
        if !to_be_taken_over(session) {
            return Ok(());
        }
        let Engine::Rustls(session) = std::mem::replace(&mut self.engine, Engine::HandingOver)
        else {
            return Ok(());
        };
        let (secrets, keys) = session.dangerous_into_kernel_connection()?;
        let records = Records::new(secrets.tx, secrets.rx, Box::new(keys))?;
        self.engine = Engine::Records(Box::new(records));
        Ok(())
    }

    /// Test hook: lowers the records sealed per key, once the records are keepmover's.
    #[cfg(test)]
    fn set_records_per_key(&mut self, records: u64) {
        if let Engine::Records(own) = &mut self.engine {
            own.set_records_per_key(records);
        }
    }

    /// Seals all of `plaintext` into the send buffer, after anything already there. Under
    /// rustls, records that arrived are processed first: their plaintext (unexpected while
    /// we send, but possible: an early response) goes to `sink`, and [`Event::PeerClosed`]
    /// is returned if the peer closed. keepmover's record layer leaves what arrived to the
    /// next read. Returns [`Event::Send`] once sealed.
    pub(crate) fn seal(
        &mut self,
        plaintext: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Event, rustls::Error> {
        if plaintext.is_empty() {
            return Ok(Event::Send);
        }
        let records = plaintext.len().div_ceil(16 << 10);
        let want = self.out_len + plaintext.len() + records * RECORD_OVERHEAD;
        if self.out.len() < want {
            self.out.resize(want, 0);
        }
        if let Engine::Records(records) = &mut self.engine {
            records.seal(plaintext, &mut self.out, &mut self.out_len)?;
            return Ok(Event::Send);
        }
        loop {
            match self.step(sink, Some(plaintext))? {
                Event::Sealed => return Ok(Event::Send),
                // Handshake or alert bytes stay in front of what is sealed.
                Event::Send | Event::Data => {}
                Event::PeerClosed => return Ok(Event::PeerClosed),
                Event::NeedInput | Event::Idle => {
                    return Err(rustls::Error::General(
                        "TLS session not ready to send".into(),
                    ))
                }
            }
        }
    }

    /// After `err` (from [`advance`](Self::advance) or [`seal`](Self::seal)), puts the
    /// fatal alert that says why into the send buffer, where rustls's state machine or
    /// keepmover's record layer can: best effort, since the connection is closed next.
    pub(crate) fn queue_fatal_alert(&mut self, err: &rustls::Error) {
        let TlsSession {
            engine,
            cin,
            start,
            out,
            out_len,
            ..
        } = self;
        match engine {
            // rustls queued it when it failed, and hands a queued alert out before it reads
            // any input: one turn encodes it (a second would read the bad record again). The
            // turn gets the buffer as it was: rustls may hold part of a handshake message at
            // an offset into it (an empty one made it panic). With nothing queued, the turn
            // just fails again.
            Engine::Rustls(session) => {
                let status = session.process_tls_records(&mut cin[*start..]);
                if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
                    encode_into(&mut encode, out, out_len);
                }
            }
            Engine::Records(records) => {
                let _ = records.seal_fatal_alert(err, out, out_len);
            }
            Engine::HandingOver => {}
        }
    }

    /// One turn of rustls's state machine (looping over handshake records to encode). With
    /// `seal`, the plaintext is sealed when the session can send ([`Event::Sealed`]).
    fn step(
        &mut self,
        sink: &mut dyn FnMut(&[u8]),
        seal: Option<&[u8]>,
    ) -> Result<Event, rustls::Error> {
        loop {
            let TlsSession {
                engine,
                cin,
                start,
                out,
                out_len,
                peer_closed,
            } = self;
            let Engine::Rustls(session) = engine else {
                return Err(rustls::Error::General("TLS session lost".into()));
            };
            // Once the handshake is done, a session to be taken over gives rustls nothing more
            // to read: a record after the server's Finished (a Go server sends its tickets in
            // that flight) is the record layer's, which takes it at sequence 0. Had rustls
            // read it, an answer it queued (to a key update) or a message it holds in part
            // would be lost in the hand-over.
            let input: &mut [u8] = if !session.is_handshaking() && to_be_taken_over(session) {
                &mut []
            } else {
                &mut cin[*start..]
            };
            let status = session.process_tls_records(input);
            let mut discard = status.discard;
            let mut again = false;
            let result = match status.state {
                Err(e) => Err(e),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut result = Ok(Event::Data);
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                sink(record.payload);
                            }
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    result
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, out, out_len);
                    again = true;
                    Ok(Event::Send)
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The caller sends `out[..out_len]` before (or together with) anything
                    // sealed later, which is what `done` promises.
                    transmit.done();
                    Ok(Event::Send)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Event::NeedInput),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match seal {
                    None => Ok(Event::Idle),
                    Some(plaintext) => loop {
                        match traffic.encrypt(plaintext, &mut out[*out_len..]) {
                            Ok(n) => {
                                *out_len += n;
                                break Ok(Event::Sealed);
                            }
                            Err(EncryptError::InsufficientSize(size)) => {
                                out.resize(*out_len + size.required_size, 0);
                            }
                            Err(EncryptError::EncryptExhausted) => {
                                break Err(rustls::Error::General(
                                    "TLS session keys exhausted".into(),
                                ))
                            }
                        }
                    },
                },
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    *peer_closed = true;
                    Ok(Event::PeerClosed)
                }
                Ok(_) => Err(rustls::Error::General(
                    "unexpected TLS connection state".into(),
                )),
            };
            *start += discard;
            if !again || result.is_err() {
                return result;
            }
        }
    }
}

/// Appends what rustls has to send (a handshake message, an alert) to `out[..out_len]`,
/// growing `out` as rustls asks.
fn encode_into(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::client::ClientConnectionData>,
    out: &mut Vec<u8>,
    out_len: &mut usize,
) {
    loop {
        match encode.encode(&mut out[*out_len..]) {
            Ok(n) => {
                *out_len += n;
                return;
            }
            Err(EncodeError::InsufficientSize(size)) => {
                out.resize(*out_len + size.required_size, 0);
            }
            Err(EncodeError::AlreadyEncoded) => return,
        }
    }
}

/// Whether a session is one keepmover's record layer takes over once its handshake is done:
/// TLS 1.3 with AES-GCM, on aws-lc-rs.
fn to_be_taken_over(session: &UnbufferedClientConnection) -> bool {
    let suite = session.negotiated_cipher_suite().map(|s| s.suite());
    OWN_RECORDS
        && session.protocol_version() == Some(ProtocolVersion::TLSv1_3)
        && matches!(
            suite,
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256 | CipherSuite::TLS13_AES_256_GCM_SHA384)
        )
}

/// Opens what is buffered with keepmover's record layer, as [`TlsSession::advance`] does
/// with rustls: one application-data record to the caller ([`Event::Data`]), records for the
/// session absorbed. An answer the session owes (a key update) goes in front of the next
/// request, as rustls sends it: before any application data, as RFC 8446 §4.6.3 asks, and
/// an idle pooled connection that absorbed a key update stays usable.
fn open_records(
    records: &mut Records,
    cin: &mut [u8],
    start: &mut usize,
    peer_closed: &mut bool,
    mut deliver: Deliver<'_>,
) -> Result<Event, rustls::Error> {
    loop {
        if *peer_closed {
            return Ok(Event::PeerClosed);
        }
        let buffered = &mut cin[*start..];
        let opened = match &mut deliver {
            Deliver::Sink(_) => records.open(buffered)?,
            Deliver::Into {
                dest,
                limit,
                overflow,
            } => records.open_into(buffered, dest, *limit, overflow)?,
        };
        match opened {
            Opened::Incomplete => return Ok(Event::Idle),
            Opened::Data { payload, consumed } => {
                if let Deliver::Sink(sink) = &mut deliver {
                    sink(&buffered[payload]);
                }
                *start += consumed;
                return Ok(Event::Data);
            }
            Opened::Appended { consumed } => {
                *start += consumed;
                return Ok(Event::Data);
            }
            Opened::Absorbed { consumed } => *start += consumed,
            Opened::Closed { consumed } => {
                *start += consumed;
                *peer_closed = true;
            }
        }
    }
}

/// Where [`TlsSession::advance_to`] puts application data.
enum Deliver<'a> {
    /// Handed to a closure.
    Sink(&'a mut dyn FnMut(&[u8])),
    /// Appended to `dest` (at most `limit` bytes, within its capacity), the rest to
    /// `overflow`.
    Into {
        dest: &'a mut Vec<u8>,
        limit: usize,
        overflow: &'a mut Vec<u8>,
    },
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::net::tls_records::{content, Sealer};

    /// A server config with a fresh self-signed certificate for `name`, speaking only
    /// `version` (the TLS tests of `conn.rs` use it too).
    pub(crate) fn test_server_config(
        name: &str,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> rustls::ServerConfig {
        server_config_with(name, version, crate::net::tls::provider())
    }

    /// [`test_server_config`] with the cryptography (and so the suites) of `provider`.
    fn server_config_with(
        name: &str,
        version: &'static rustls::SupportedProtocolVersion,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> rustls::ServerConfig {
        let key = rcgen::generate_simple_self_signed(vec![name.into()]).expect("cert");
        let cert = key.cert.der().clone();
        let private =
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .expect("config")
    }

    fn server(version: &'static rustls::SupportedProtocolVersion) -> rustls::ServerConnection {
        let config = test_server_config("localhost", version);
        let mut server = rustls::ServerConnection::new(Arc::new(config)).expect("server");
        server.set_buffer_limit(None);
        server
    }

    fn client() -> TlsSession {
        let config = crate::net::tls::client_config(crate::net::TlsPolicy::Insecure).expect("tls");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        TlsSession::new(UnbufferedClientConnection::new(config, name).expect("client"))
    }

    /// Cuts `bytes` into reads of awkward sizes (1 byte, a header, a record and a bit, ...).
    #[derive(Default)]
    struct Wire {
        bytes: Vec<u8>,
        pos: usize,
        turn: usize,
    }

    impl Wire {
        /// One "socket read" into the client's receive buffer; false when nothing is left.
        fn read_into(&mut self, tls: &mut TlsSession) -> bool {
            if self.pos == self.bytes.len() {
                return false;
            }
            const SIZES: [usize; 8] = [1, 2, 5, 6, 100, 4000, 16_389, 70_000];
            self.turn += 1;
            let (mut cin, kept) = tls.take_cin_for_read();
            let room = cin.capacity() - cin.len();
            let n = SIZES[self.turn % SIZES.len()]
                .min(room)
                .min(self.bytes.len() - self.pos);
            cin.extend_from_slice(&self.bytes[self.pos..self.pos + n]);
            tls.restore_cin(cin, kept);
            self.pos += n;
            true
        }
    }

    fn server_output(server: &mut rustls::ServerConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut out).expect("write_tls");
        }
        out
    }

    /// Delivers the client's sealed bytes to the server; returns the plaintext it got.
    fn to_server(tls: &mut TlsSession, server: &mut rustls::ServerConnection) -> Vec<u8> {
        let (out, len) = tls.take_out();
        let mut sent = &out[..len];
        let mut plain = Vec::new();
        while !sent.is_empty() {
            server.read_tls(&mut sent).expect("read_tls");
            server.process_new_packets().expect("server");
            let _ = std::io::Read::read_to_end(&mut server.reader(), &mut plain);
        }
        tls.restore_out(out);
        plain
    }

    /// A client and a server over a fresh wire, the handshake done.
    fn connected(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (TlsSession, rustls::ServerConnection, Wire) {
        let mut server = server(version);
        let mut tls = client();
        let mut wire = Wire::default();
        handshake(&mut tls, &mut server, &mut wire);
        (tls, server, wire)
    }

    /// Runs the handshake to its end, the server's flight reaching the client through `wire`
    /// (in the reads it cuts), and hands the client's last flight to the server.
    fn handshake(tls: &mut TlsSession, server: &mut rustls::ServerConnection, wire: &mut Wire) {
        loop {
            match tls
                .advance(&mut |_| panic!("no data during the handshake"))
                .expect("handshake")
            {
                Event::Send => assert!(to_server(tls, server).is_empty()),
                Event::NeedInput => {
                    if !wire.read_into(tls) {
                        wire.bytes.extend(server_output(server));
                        assert!(wire.read_into(tls), "handshake stuck");
                    }
                }
                Event::Idle => break,
                other => panic!("{other:?} during the handshake"),
            }
        }
        to_server(tls, server);
    }

    /// Handshake, a 1 MiB request, a 2 MiB response and close_notify, with every server
    /// flight reaching the client in reads that cut records (and handshake messages) apart.
    fn exchange(version: &'static rustls::SupportedProtocolVersion) {
        let (mut tls, mut server, mut wire) = connected(version);
        let mut ignored = |_: &[u8]| panic!("no data expected");

        let request: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut received = Vec::new();
        for piece in request.chunks(SEAL_BATCH) {
            assert_eq!(tls.seal(piece, &mut ignored).expect("seal"), Event::Send);
            assert!(tls.outgoing() > piece.len());
            received.extend(to_server(&mut tls, &mut server));
        }
        assert!(received == request);

        let response: Vec<u8> = (0..2u32 << 20).map(|i| (i % 241) as u8).collect();
        std::io::Write::write_all(&mut server.writer(), &response).expect("server write");
        server.send_close_notify();
        wire.bytes.extend(server_output(&mut server));
        let mut got = Vec::new();
        loop {
            match tls.advance(&mut |plain| got.extend_from_slice(plain)) {
                Ok(Event::Data | Event::Send) => {}
                Ok(Event::Idle | Event::NeedInput) => {
                    assert!(
                        wire.read_into(&mut tls),
                        "stream ended without close_notify"
                    )
                }
                Ok(Event::PeerClosed) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(got == response, "{} of {} bytes", got.len(), response.len());
        assert!(tls.peer_closed());
        assert_eq!(tls.undiscarded(), 0);
    }

    #[test]
    fn tls13_records_and_handshake_messages_cut_across_reads() {
        exchange(&rustls::version::TLS13);
    }

    #[test]
    fn tls12_records_and_handshake_messages_cut_across_reads() {
        exchange(&rustls::version::TLS12);
    }

    /// A record whose tag does not check is an error, and the client's next bytes tell the
    /// server why: a fatal bad_record_mac alert (RFC 8446 §5.2), from keepmover's record
    /// layer (TLS 1.3) or from rustls (TLS 1.2).
    fn corrupted_record(version: &'static rustls::SupportedProtocolVersion) {
        let (mut tls, mut server, mut wire) = connected(version);
        // Drain what is still on the wire (tickets) before corrupting the next record.
        while wire.read_into(&mut tls) {
            assert!(!matches!(
                tls.advance(&mut |_| {}),
                Err(_) | Ok(Event::Data)
            ));
        }
        std::io::Write::write_all(&mut server.writer(), b"hello").expect("write");
        let mut record = server_output(&mut server);
        let last = record.len() - 1;
        record[last] ^= 1;
        let mut wire = Wire {
            bytes: record,
            pos: 0,
            turn: 0,
        };
        let result = loop {
            match tls.advance(&mut |plain| panic!("corrupt plaintext {plain:?}")) {
                Ok(Event::Idle | Event::NeedInput) => assert!(wire.read_into(&mut tls)),
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(result, rustls::Error::DecryptError), "{result}");
        tls.queue_fatal_alert(&result);
        let (out, len) = tls.take_out();
        assert!(len > 0, "no alert queued");
        let mut sent = &out[..len];
        server.read_tls(&mut sent).expect("read_tls");
        assert_eq!(
            server.process_new_packets().map(|_| ()),
            Err(rustls::Error::AlertReceived(
                rustls::AlertDescription::BadRecordMac
            ))
        );
    }

    #[test]
    fn a_corrupted_record_is_an_error_and_the_server_hears_why_tls13() {
        corrupted_record(&rustls::version::TLS13);
    }

    #[test]
    fn a_corrupted_record_is_an_error_and_the_server_hears_why_tls12() {
        corrupted_record(&rustls::version::TLS12);
    }

    /// rustls fails without queuing an alert while it holds part of a handshake message: the
    /// alert's turn must give it its buffer as it was (an empty one made it slice out of
    /// range and panic, reachable by any server before authentication).
    #[test]
    fn an_error_with_a_handshake_message_held_in_part_queues_no_alert_and_does_not_panic() {
        let mut tls = client();
        assert_eq!(tls.advance(&mut |_| {}).expect("hello"), Event::Send);
        let (out, _) = tls.take_out();
        tls.restore_out(out);
        // Plaintext: four bytes of a ServerHello said to be 100 long, then an alert record.
        let mut bytes = vec![22, 3, 3, 0, 8, 2, 0, 0, 100, 3, 3, 0, 0];
        bytes.extend([21, 3, 3, 0, 2, 2, 40]);
        let mut wire = Wire {
            bytes,
            pos: 0,
            turn: 0,
        };
        let err = loop {
            match tls.advance(&mut |_| panic!("no data")) {
                Ok(Event::NeedInput | Event::Idle) => {
                    assert!(
                        wire.read_into(&mut tls),
                        "no error from the interleaved alert"
                    )
                }
                Ok(Event::Send) => {
                    let (out, _) = tls.take_out();
                    tls.restore_out(out);
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        tls.queue_fatal_alert(&err);
    }

    #[test]
    fn an_alert_from_the_peer_is_not_answered() {
        assert_eq!(
            crate::net::tls_records::alert_for(&rustls::Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            )),
            None
        );
        let alert = |e: rustls::Error| crate::net::tls_records::alert_for(&e);
        use rustls::{AlertDescription as A, InvalidMessage as M};
        for (error, want) in [
            (rustls::Error::DecryptError, A::BadRecordMac),
            (rustls::Error::PeerSentOversizedRecord, A::RecordOverflow),
            (M::MessageTooLarge.into(), A::RecordOverflow),
            (M::InvalidContentType.into(), A::UnexpectedMessage),
            (M::InvalidKeyUpdate.into(), A::IllegalParameter),
            (M::MessageTooShort.into(), A::DecodeError),
            (
                rustls::PeerMisbehaved::IllegalTlsInnerPlaintext.into(),
                A::UnexpectedMessage,
            ),
            (rustls::Error::EncryptError, A::InternalError),
        ] {
            assert_eq!(alert(error.clone()), Some(want), "{error}");
        }
    }

    #[test]
    fn tls13_sessions_are_taken_over_and_tls12_ones_stay_with_rustls() {
        assert_eq!(
            connected(&rustls::version::TLS13).0.own_records(),
            OWN_RECORDS
        );
        assert!(!connected(&rustls::version::TLS12).0.own_records());
    }

    /// Reads what the wire holds into the client, after what it has buffered (an empty wire:
    /// only that); returns the plaintext and the last event (or the error).
    fn receive(tls: &mut TlsSession, wire: &mut Wire) -> (Vec<u8>, Result<Event, rustls::Error>) {
        let mut got = Vec::new();
        loop {
            match tls.advance(&mut |plain| got.extend_from_slice(plain)) {
                Ok(Event::Data) => {}
                Ok(Event::Idle | Event::NeedInput) if wire.read_into(tls) => {}
                other => return (got, other),
            }
        }
    }

    #[test]
    fn a_key_update_the_server_asks_for_is_answered_and_both_directions_go_on() {
        let (mut tls, mut server, mut wire) = connected(&rustls::version::TLS13);
        server.refresh_traffic_keys().expect("key update");
        std::io::Write::write_all(&mut server.writer(), b"after the update").expect("write");
        wire.bytes.extend(server_output(&mut server));
        let (got, event) = receive(&mut tls, &mut wire);
        assert_eq!(got, b"after the update");
        assert_eq!(event.expect("data"), Event::Idle);
        // The client's answer (its own key update) waits for its next request.
        answer_then_request(&mut tls, &mut server);
    }

    /// Seals a request after a key update the client owes: a KeyUpdate record (5 + 5 + 1 +
    /// 16 bytes) goes first, then the request's (5 + 7 + 1 + 16), which the server reads
    /// under the client's new key.
    fn answer_then_request(tls: &mut TlsSession, server: &mut rustls::ServerConnection) {
        assert_eq!(tls.outgoing(), 0);
        assert_eq!(
            tls.seal(b"request", &mut |_| {}).expect("seal"),
            Event::Send
        );
        assert_eq!(tls.outgoing(), 27 + 29);
        assert_eq!(to_server(tls, server), b"request");
    }

    #[test]
    fn the_sending_key_moves_on_after_its_records() {
        let (mut tls, mut server, mut wire) = connected(&rustls::version::TLS13);
        if !tls.own_records() {
            return;
        }
        tls.set_records_per_key(3);
        // 20 records: six key updates on the way, each read by the server.
        let request: Vec<u8> = (0..20u32 << 14).map(|i| (i % 253) as u8).collect();
        let mut received = Vec::new();
        for piece in request.chunks(SEAL_BATCH) {
            assert_eq!(tls.seal(piece, &mut |_| {}).expect("seal"), Event::Send);
            received.extend(to_server(&mut tls, &mut server));
        }
        assert!(received == request);
        std::io::Write::write_all(&mut server.writer(), b"reply").expect("write");
        wire.bytes.extend(server_output(&mut server));
        assert_eq!(receive(&mut tls, &mut wire).0, b"reply");
    }

    /// A client whose server's sending key the test holds, to send it records no rustls
    /// server would: (client, sealer of the server's records).
    fn crafted() -> Option<(TlsSession, Sealer, Wire)> {
        let mut config = test_server_config("localhost", &rustls::version::TLS13);
        config.enable_secret_extraction = true;
        config.send_tls13_tickets = 0;
        let mut server = rustls::ServerConnection::new(Arc::new(config)).expect("server");
        let mut tls = client();
        let mut wire = Wire::default();
        handshake(&mut tls, &mut server, &mut wire);
        if !tls.own_records() {
            return None;
        }
        let secrets = server.dangerous_extract_secrets().expect("secrets");
        assert_eq!(secrets.tx.0, 0);
        Some((tls, Sealer::new(&secrets.tx.1).expect("sealer"), wire))
    }

    /// Records to craft: (inner content type and padding, payload).
    type Crafted<'a> = &'a [(&'a [u8], &'a [u8])];

    /// Seals `(inner type and padding, payload)` records and feeds them to the client.
    fn send_crafted(records: &[(&[u8], &[u8])]) -> Option<(Vec<u8>, Result<Event, rustls::Error>)> {
        let (mut tls, mut sealer, mut wire) = crafted()?;
        let (mut out, mut len) = (Vec::new(), 0);
        for (trailer, payload) in records {
            sealer
                .seal(payload, trailer, &mut out, &mut len)
                .expect("seal");
        }
        wire.bytes.extend_from_slice(&out[..len]);
        Some(receive(&mut tls, &mut wire))
    }

    const DATA: &[u8] = &[content::APPLICATION_DATA];
    const HANDSHAKE: &[u8] = &[content::HANDSHAKE];
    const ALERT: &[u8] = &[content::ALERT];
    const EMPTY: &[u8] = &[];

    /// A NewSessionTicket message (lifetime 60 s, a 4-byte ticket, no extensions).
    const TICKET: &[u8] = &[
        4, 0, 0, 18, 0, 0, 0, 60, 0, 0, 0, 1, 1, 7, 0, 4, 1, 2, 3, 4, 0, 0,
    ];

    /// An error's variants, without their strings and lists.
    fn kind(error: &rustls::Error) -> String {
        let debug = format!("{error:?}");
        debug[..debug.find(['"', '{']).unwrap_or(debug.len())].to_string()
    }

    fn crafted_error(records: Crafted) -> Option<rustls::Error> {
        let (got, event) = send_crafted(records)?;
        assert!(got.is_empty() || got == b"before", "{got:?}");
        Some(event.expect_err("an error"))
    }

    #[test]
    fn padding_empty_records_and_a_ticket_cut_across_records_are_taken() {
        let Some((got, event)) = send_crafted(&[
            (&[content::APPLICATION_DATA, 0, 0, 0, 0], b"padded "),
            (DATA, b""),
            (HANDSHAKE, &TICKET[..6]),
            (HANDSHAKE, &TICKET[6..]),
            (&[content::HANDSHAKE, 0], TICKET),
            (DATA, b"data"),
            (&[content::ALERT, 0, 0, 0], &[1, 0]),
            (DATA, b"after close_notify"),
        ]) else {
            return;
        };
        assert_eq!(got, b"padded data");
        assert_eq!(event.expect("closed"), Event::PeerClosed);
    }

    #[test]
    fn records_that_break_tls13_rules_are_errors() {
        use rustls::{Error, InvalidMessage, PeerMisbehaved};
        let cases: [(Crafted, Error); 8] = [
            (
                &[(&[0, 0], b"")],
                PeerMisbehaved::IllegalTlsInnerPlaintext.into(),
            ),
            (&[(&[99], b"x")], InvalidMessage::InvalidContentType.into()),
            (
                &[
                    (HANDSHAKE, &TICKET[..6]),
                    (DATA, b"before"),
                    (HANDSHAKE, &TICKET[6..]),
                ],
                InvalidMessage::UnexpectedMessage("").into(),
            ),
            (
                &[(HANDSHAKE, &[24, 0, 0, 1, 2])],
                InvalidMessage::InvalidKeyUpdate.into(),
            ),
            (
                &[(HANDSHAKE, &[24, 0, 0, 1, 0, 4, 0])],
                PeerMisbehaved::KeyEpochWithPendingFragment.into(),
            ),
            (
                &[(HANDSHAKE, &[13, 0, 0, 0])],
                Error::InappropriateHandshakeMessage {
                    expect_types: Vec::new(),
                    got_type: rustls::HandshakeType::CertificateRequest,
                },
            ),
            (
                &[(DATA, b"before"), (ALERT, &[2, 40])],
                Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
            ),
            (
                &[(DATA, EMPTY); 40],
                PeerMisbehaved::TooManyEmptyFragments.into(),
            ),
        ];
        for (records, want) in cases {
            let Some(got) = crafted_error(records) else {
                return;
            };
            assert_eq!(kind(&got), kind(&want), "{got:?}");
        }
    }

    #[test]
    fn plaintext_oversized_and_foreign_version_records_are_errors() {
        use rustls::{Error, InvalidMessage, PeerMisbehaved};
        let oversized = {
            let [hi, lo] = ((16 << 10) + 257u16).to_be_bytes();
            vec![content::APPLICATION_DATA, 3, 3, hi, lo]
        };
        let cases: [(Vec<u8>, Error); 5] = [
            (
                vec![20, 3, 3, 0, 1, 1],
                PeerMisbehaved::IllegalMiddleboxChangeCipherSpec.into(),
            ),
            (
                vec![21, 3, 3, 0, 2, 2, 40],
                InvalidMessage::UnexpectedMessage("").into(),
            ),
            (oversized, InvalidMessage::MessageTooLarge.into()),
            (
                vec![23, 2, 0, 0, 20],
                InvalidMessage::UnknownProtocolVersion.into(),
            ),
            (vec![23, 3, 3, 0, 16], Error::DecryptError),
        ];
        for (bytes, want) in cases {
            let Some((mut tls, _, mut wire)) = crafted() else {
                return;
            };
            wire.bytes.extend(bytes);
            let got = receive(&mut tls, &mut wire).1.expect_err("an error");
            assert_eq!(kind(&got), kind(&want), "{got:?}");
        }
    }

    /// The traffic secrets rustls's key log gives out (the test server's), by label.
    #[derive(Debug, Default)]
    struct KeyLog(std::sync::Mutex<Vec<(String, Vec<u8>)>>);

    impl rustls::KeyLog for KeyLog {
        fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
            if let Ok(mut logged) = self.0.lock() {
                logged.push((label.to_string(), secret.to_vec()));
            }
        }
    }

    /// TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1) with SHA-384 and an empty context.
    fn expand_label(secret: &[u8], label: &str, len: usize) -> Vec<u8> {
        struct Len(usize);
        impl aws_lc_rs::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let prk = aws_lc_rs::hkdf::Prk::new_less_safe(aws_lc_rs::hkdf::HKDF_SHA384, secret);
        let label = format!("tls13 {label}");
        let length = (len as u16).to_be_bytes();
        let info: [&[u8]; 4] = [&length, &[label.len() as u8], label.as_bytes(), &[0]];
        let mut out = vec![0; len];
        prk.expand(&info, Len(len))
            .and_then(|okm| okm.fill(&mut out))
            .expect("expand");
        out
    }

    /// A client whose server's first flight (through its Finished) is followed by `extra`:
    /// records sealed under the server's first application traffic key, as a Go server
    /// sends its tickets. Returns the client after its handshake (taken over), and the server.
    fn first_flight_and(
        extra: impl FnOnce(&mut Sealer) -> Vec<u8>,
    ) -> Option<(TlsSession, rustls::ServerConnection)> {
        // A server that speaks only AES-256-GCM (the client offers AES-128 first, which the
        // other tests' servers take): both key sizes are taken over, and HKDF is SHA-384 here.
        let mut provider = (*crate::net::tls::provider()).clone();
        provider
            .cipher_suites
            .retain(|suite| suite.suite() == rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        let mut config =
            server_config_with("localhost", &rustls::version::TLS13, Arc::new(provider));
        let log = Arc::new(KeyLog::default());
        config.key_log = log.clone();
        config.send_tls13_tickets = 0;
        let mut server = rustls::ServerConnection::new(Arc::new(config)).expect("server");
        let mut tls = client();
        let mut extra = Some(extra);
        loop {
            match tls.advance(&mut |_| {}) {
                Ok(Event::Send) => assert!(to_server(&mut tls, &mut server).is_empty()),
                Ok(Event::NeedInput) => {
                    let mut flight = server_output(&mut server);
                    if let Some(extra) = extra.take() {
                        assert_eq!(
                            server.negotiated_cipher_suite().map(|s| s.suite()),
                            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
                        );
                        let logged = log.0.lock().expect("key log");
                        let (_, secret) = logged
                            .iter()
                            .find(|(label, _)| label == "SERVER_TRAFFIC_SECRET_0")
                            .expect("the server's traffic secret");
                        let key: [u8; 32] =
                            expand_label(secret, "key", 32).try_into().expect("key");
                        let iv: [u8; 12] = expand_label(secret, "iv", 12).try_into().expect("iv");
                        let secrets = rustls::ConnectionTrafficSecrets::Aes256Gcm {
                            key: rustls::crypto::cipher::AeadKey::from(key),
                            iv: rustls::crypto::cipher::Iv::new(iv),
                        };
                        flight.extend(extra(&mut Sealer::new(&secrets).expect("sealer")));
                    }
                    assert!(!flight.is_empty(), "handshake stuck");
                    tls.push_ciphertext(&flight);
                }
                Ok(Event::Idle) => break,
                // rustls (with `tls-ring`) reads the extra records itself, data included.
                Ok(Event::Data) if !OWN_RECORDS => {}
                other => panic!("{other:?} in the handshake"),
            }
        }
        to_server(&mut tls, &mut server);
        tls.own_records().then_some((tls, server))
    }

    fn sealed(sealer: &mut Sealer, records: Crafted) -> Vec<u8> {
        let (mut out, mut len) = (Vec::new(), 0);
        for (trailer, payload) in records {
            sealer
                .seal(payload, trailer, &mut out, &mut len)
                .expect("seal");
        }
        out.truncate(len);
        out
    }

    #[test]
    fn records_right_after_the_servers_finished_are_opened_after_the_hand_over() {
        let Some((mut tls, _server)) = first_flight_and(|sealer| {
            sealed(
                sealer,
                &[(HANDSHAKE, TICKET), (HANDSHAKE, TICKET), (DATA, b"early")],
            )
        }) else {
            return;
        };
        let (got, event) = receive(&mut tls, &mut Wire::default());
        assert_eq!(got, b"early");
        assert_eq!(event.expect("idle"), Event::Idle);
        assert_eq!(tls.undiscarded(), 0);
    }

    #[test]
    fn a_key_update_asked_for_in_the_servers_first_flight_is_answered() {
        let Some((mut tls, mut server)) =
            first_flight_and(|sealer| sealed(sealer, &[(HANDSHAKE, &[24, 0, 0, 1, 1])]))
        else {
            return;
        };
        assert_eq!(
            receive(&mut tls, &mut Wire::default()).1.expect("idle"),
            Event::Idle
        );
        answer_then_request(&mut tls, &mut server);
    }

    #[test]
    fn a_ticket_cut_across_the_hand_over_is_put_together() {
        let mut second = Vec::new();
        let Some((mut tls, _server)) = first_flight_and(|sealer| {
            let first = sealed(sealer, &[(HANDSHAKE, &TICKET[..6])]);
            second = sealed(sealer, &[(HANDSHAKE, &TICKET[6..]), (DATA, b"hello")]);
            first
        }) else {
            return;
        };
        assert_eq!(
            receive(&mut tls, &mut Wire::default()).1.expect("idle"),
            Event::Idle
        );
        tls.push_ciphertext(&second);
        let (got, event) = receive(&mut tls, &mut Wire::default());
        assert_eq!(got, b"hello");
        assert_eq!(event.expect("idle"), Event::Idle);
    }

    #[test]
    fn warnings_and_oversized_plaintext() {
        use rustls::{Error, PeerMisbehaved};
        let oversized = vec![7u8; 16 << 10];
        let mut padding = vec![content::APPLICATION_DATA];
        padding.resize(200, 0);
        const USER_CANCELED: &[u8] = &[1, 90];
        let cases: [(Crafted, Result<Event, Error>); 4] = [
            (
                &[(DATA, b"a"), (ALERT, &[1, 90]), (ALERT, &[1, 0])],
                Ok(Event::PeerClosed),
            ),
            (
                &[(ALERT, USER_CANCELED); 5],
                Err(PeerMisbehaved::TooManyWarningAlertsReceived.into()),
            ),
            (
                &[(ALERT, &[77, 0])],
                Err(Error::AlertReceived(rustls::AlertDescription::CloseNotify)),
            ),
            (
                &[(&padding, &oversized)],
                Err(Error::PeerSentOversizedRecord),
            ),
        ];
        for (records, want) in cases {
            let Some((_, event)) = send_crafted(records) else {
                return;
            };
            match (&event, &want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert_eq!(kind(got), kind(want), "{got:?}"),
                _ => panic!("{event:?} for {want:?}"),
            }
        }
    }

    #[test]
    fn tickets_opened_by_the_record_layer_resume_the_next_session() {
        // One server config (its ticketer) for both connections; the client's session store
        // is process-wide.
        let mut config = test_server_config("resume.example", &rustls::version::TLS13);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
        let config = Arc::new(config);
        let name = rustls::pki_types::ServerName::try_from("resume.example").expect("name");
        let client_config =
            crate::net::tls::client_config(crate::net::TlsPolicy::Insecure).expect("tls");
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut server = rustls::ServerConnection::new(config.clone()).expect("server");
            let session = UnbufferedClientConnection::new(client_config.clone(), name.clone())
                .expect("client");
            let mut tls = TlsSession::new(session);
            let mut wire = Wire::default();
            handshake(&mut tls, &mut server, &mut wire);
            kinds.push(server.handshake_kind());
            // The server's tickets, then a response, reach the client.
            std::io::Write::write_all(&mut server.writer(), b"ok").expect("write");
            wire.bytes.extend(server_output(&mut server));
            assert_eq!(receive(&mut tls, &mut wire).0, b"ok");
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ]
        );
    }
}
