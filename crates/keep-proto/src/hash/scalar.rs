//! Scalar MD5: the one-stream compression function and the streaming [`Md5State`].
//!
//! Why our own scalar code instead of calling md-5: the multi-lane engine needs to read and
//! write the four chaining words of a stream (to load them into a SIMD lane and store them
//! back), and md-5 0.10 keeps both its state and its `compress` private. The compression
//! below is the same straight-line code as md-5's portable backend, with two textbook
//! rewrites that shorten the dependency chain of each step (`F = d ^ (b & (c ^ d))` and
//! `G = (b & d) + (c & !d)`, whose second term does not depend on the newest word). The
//! benches show it at least as fast as md-5 for one stream; every test compares against md-5.
//!
//! Everything here is safe code, so it is also what Miri can check (tail handling, padding).

use super::rounds::md5_rounds;

/// The MD5 initial chaining value (RFC 1321 §3.3).
pub(super) const INITIAL_WORDS: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// MD5 block size in bytes.
pub(super) const BLOCK_LEN: usize = 64;

/// Compresses whole 64-byte blocks of `blocks` into `words`. `blocks.len()` must be a multiple
/// of 64; a shorter remainder is ignored (callers only pass whole blocks).
#[inline]
pub(super) fn compress_blocks(words: &mut [u32; 4], blocks: &[u8]) {
    if !blocks.is_empty() {
        super::usage::record(super::Backend::Scalar, blocks.len() / BLOCK_LEN, 1, 1);
    }
    for block in blocks.chunks_exact(BLOCK_LEN) {
        let mut m = [0u32; 16];
        for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        compress_words(words, &m);
    }
}

/// One MD5 compression of the 16 little-endian message words `m` into `words`.
#[inline(always)]
fn compress_words(words: &mut [u32; 4], m: &[u32; 16]) {
    let [mut a, mut b, mut c, mut d] = *words;
    macro_rules! step {
        (f, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
            $a = $a
                .wrapping_add(m[$m].wrapping_add($k))
                .wrapping_add($d ^ ($b & ($c ^ $d)))
                .rotate_left($s)
                .wrapping_add($b);
        };
        (g, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
            $a = $a
                .wrapping_add(m[$m].wrapping_add($k))
                .wrapping_add($c & !$d)
                .wrapping_add($b & $d)
                .rotate_left($s)
                .wrapping_add($b);
        };
        (h, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
            $a = $a
                .wrapping_add(m[$m].wrapping_add($k))
                .wrapping_add($b ^ $c ^ $d)
                .rotate_left($s)
                .wrapping_add($b);
        };
        (i, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
            $a = $a
                .wrapping_add(m[$m].wrapping_add($k))
                .wrapping_add($c ^ ($b | !$d))
                .rotate_left($s)
                .wrapping_add($b);
        };
    }
    md5_rounds!(step, a, b, c, d);
    words[0] = words[0].wrapping_add(a);
    words[1] = words[1].wrapping_add(b);
    words[2] = words[2].wrapping_add(c);
    words[3] = words[3].wrapping_add(d);
}

/// Serialises a chaining value as the 16-byte MD5 digest.
#[inline]
pub(super) fn words_to_digest(words: &[u32; 4]) -> [u8; 16] {
    let mut digest = [0u8; 16];
    for (out, word) in digest.chunks_exact_mut(4).zip(words) {
        out.copy_from_slice(&word.to_le_bytes());
    }
    digest
}

/// Writes the MD5 padding for a message of `total_len` bytes whose last `tail.len() < 64`
/// bytes are `tail` into `out`, returning how many bytes (64 or 128) form the final blocks.
#[inline]
pub(super) fn pad_final_blocks(tail: &[u8], total_len: u64, out: &mut [u8; 128]) -> usize {
    debug_assert!(tail.len() < BLOCK_LEN);
    let used = if tail.len() < 56 { 64 } else { 128 };
    out[..tail.len()].copy_from_slice(tail);
    out[tail.len()] = 0x80;
    out[tail.len() + 1..used - 8].fill(0);
    out[used - 8..used].copy_from_slice(&total_len.wrapping_mul(8).to_le_bytes());
    used
}

/// A streaming MD5 computation: the four chaining words, the bytes of the unfinished block
/// and the total length fed so far. Feed it with [`Md5State::update`] (one stream, scalar)
/// or [`super::update_many`] (many streams in SIMD lanes); both can be mixed freely.
#[derive(Clone)]
pub struct Md5State {
    pub(super) words: [u32; 4],
    /// The first `len % 64` bytes are the unfinished block; the rest is stale.
    pub(super) tail: [u8; BLOCK_LEN],
    pub(super) len: u64,
}

impl Default for Md5State {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Md5State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Md5State")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Md5State {
    /// A fresh state (the MD5 of nothing so far).
    pub fn new() -> Self {
        Self {
            words: INITIAL_WORDS,
            tail: [0; BLOCK_LEN],
            len: 0,
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bytes waiting in the unfinished block.
    #[inline]
    pub(super) fn tail_len(&self) -> usize {
        (self.len % BLOCK_LEN as u64) as usize
    }

    /// Feeds `data` into this one stream with the scalar compression function.
    pub fn update(&mut self, data: &[u8]) {
        let tail_len = self.tail_len();
        self.len = self.len.wrapping_add(data.len() as u64);
        let mut rest = data;
        if tail_len > 0 {
            let take = (BLOCK_LEN - tail_len).min(rest.len());
            self.tail[tail_len..tail_len + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            if tail_len + take < BLOCK_LEN {
                return;
            }
            compress_blocks(&mut self.words, &self.tail);
        }
        let whole = rest.len() - rest.len() % BLOCK_LEN;
        compress_blocks(&mut self.words, &rest[..whole]);
        let remainder = &rest[whole..];
        self.tail[..remainder.len()].copy_from_slice(remainder);
    }

    /// Pads and returns the digest (identical to md-5's).
    pub fn finalize(self) -> [u8; 16] {
        self.digest()
    }

    /// The digest of what has been fed so far, without consuming the state.
    pub fn digest(&self) -> [u8; 16] {
        let mut padded = [0u8; 128];
        let used = pad_final_blocks(&self.tail[..self.tail_len()], self.len, &mut padded);
        let mut words = self.words;
        compress_blocks(&mut words, &padded[..used]);
        words_to_digest(&words)
    }
}

/// One-shot scalar MD5 of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    let mut state = Md5State::new();
    state.update(data);
    state.finalize()
}
