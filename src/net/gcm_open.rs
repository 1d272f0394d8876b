//! AES-GCM opening into memory the caller has not initialised: a TLS record's plaintext
//! decrypted straight into the spare capacity of a block buffer.
//!
//! Why: without it every byte received over HTTPS is written twice, decrypted in place in the
//! receive buffer and then copied into the block, and that copy into the block (cold memory)
//! was 8–9% of keepmover's CPU on a TLS copy (`perf`, BENCHMARKS.md). aws-lc-rs opens only
//! into an initialised `&mut [u8]`, and a `Vec`'s spare capacity is not one: zeroing it first
//! would cost the very pass this saves. So this module calls aws-lc's C AEAD (the same library
//! and AES-GCM code aws-lc-rs runs) through `aws-lc-sys`, with a raw pointer to the spare
//! capacity: writing through a raw pointer into uninitialised memory is allowed where making a
//! `&mut [u8]` of it is not. It is the only `unsafe` of the TLS code, and it does no parsing:
//! the record layer (`tls_records.rs`) decides what to open and where.

#![allow(unsafe_code)]

use std::ptr::NonNull;

use aws_lc_sys::{
    CRYPTO_library_init, EVP_AEAD_CTX_free, EVP_AEAD_CTX_new, EVP_AEAD_CTX_open_gather,
    EVP_aead_aes_128_gcm, EVP_aead_aes_256_gcm, EVP_AEAD_CTX,
};

/// AES-GCM's tag.
pub const TAG_LEN: usize = 16;
/// AES-GCM's nonce.
pub const NONCE_LEN: usize = 12;

/// The key was refused (wrong length), the destination had no room, or a record did not
/// authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unspecified;

/// An AES-GCM key (128 or 256 bits, by its length) for opening. Neither `Send` nor `Sync`
/// (a raw pointer): a connection's keys stay on its worker thread, like everything in `net`.
pub struct GcmOpenKey {
    ctx: NonNull<EVP_AEAD_CTX>,
}

impl GcmOpenKey {
    /// A key from its bytes: 16 for AES-128-GCM, 32 for AES-256-GCM.
    pub fn new(key: &[u8]) -> Result<GcmOpenKey, Unspecified> {
        static INIT: std::sync::Once = std::sync::Once::new();
        // SAFETY: CRYPTO_library_init takes no arguments and may be called any number of
        // times (aws-lc-rs calls it too); once is enough.
        INIT.call_once(|| unsafe { CRYPTO_library_init() });
        let aead = match key.len() {
            // SAFETY: no arguments; returns a pointer to a static method table.
            16 => unsafe { EVP_aead_aes_128_gcm() },
            // SAFETY: as above.
            32 => unsafe { EVP_aead_aes_256_gcm() },
            _ => return Err(Unspecified),
        };
        // SAFETY: `key` is valid for reads of `key.len()` bytes for the duration of the call
        // (aws-lc copies the key schedule out of it); `aead` is a valid method table. A null
        // return (allocation failure, a bad key) is checked below.
        let ctx = unsafe { EVP_AEAD_CTX_new(aead, key.as_ptr(), key.len(), TAG_LEN) };
        NonNull::new(ctx)
            .map(|ctx| GcmOpenKey { ctx })
            .ok_or(Unspecified)
    }

    /// Opens `ciphertext` (the tag not included) authenticated by `tag` and `aad`, writing its
    /// plaintext (as long as the ciphertext) into the spare capacity of `out`, after its
    /// length, which grows by that much once the tag checks out. Fails, leaving the length of
    /// `out` as it was, if the spare capacity is too small or the record does not
    /// authenticate (aws-lc then zeroes what it wrote into the spare capacity; no plaintext
    /// of a forged record is left there).
    pub fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut Vec<u8>,
    ) -> Result<(), Unspecified> {
        let spare = out.spare_capacity_mut();
        if spare.len() < ciphertext.len() {
            return Err(Unspecified);
        }
        // SAFETY: `self.ctx` is a live context (freed only in Drop). `spare` is valid for
        // writes of `ciphertext.len()` bytes (checked above), and does not overlap the
        // inputs: they are shared borrows while `out` is borrowed mutably. The nonce, the
        // ciphertext, the tag and the AAD are valid for reads of the lengths passed. aws-lc
        // writes only within `out[..in_len]`, and reads nothing it did not write there.
        let opened = unsafe {
            EVP_AEAD_CTX_open_gather(
                self.ctx.as_ptr(),
                spare.as_mut_ptr().cast::<u8>(),
                nonce.as_ptr(),
                NONCE_LEN,
                ciphertext.as_ptr(),
                ciphertext.len(),
                tag.as_ptr(),
                TAG_LEN,
                aad.as_ptr(),
                aad.len(),
            )
        };
        if opened != 1 {
            return Err(Unspecified);
        }
        let len = out.len() + ciphertext.len();
        // SAFETY: aws-lc returned 1, so it wrote all `ciphertext.len()` plaintext bytes after
        // the old length; that is within the capacity (checked above), and now initialised.
        unsafe { out.set_len(len) };
        Ok(())
    }
}

impl Drop for GcmOpenKey {
    fn drop(&mut self) {
        // SAFETY: the context came from EVP_AEAD_CTX_new and is freed once, here.
        unsafe { EVP_AEAD_CTX_free(self.ctx.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

    /// Sealed by aws-lc-rs, opened here, for both key sizes; a wrong byte anywhere fails and
    /// leaves the destination's length alone.
    #[test]
    fn opens_what_aws_lc_rs_sealed_and_refuses_anything_altered() {
        for (algorithm, key_len) in [(&AES_128_GCM, 16), (&AES_256_GCM, 32)] {
            let key: Vec<u8> = (0..key_len as u8).collect();
            let sealer = LessSafeKey::new(UnboundKey::new(algorithm, &key).expect("key"));
            let opener = GcmOpenKey::new(&key).expect("key");
            let nonce = [7u8; NONCE_LEN];
            let aad = [23, 3, 3, 0, 99];
            let plaintext: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
            let mut ciphertext = plaintext.clone();
            let tag = sealer
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut ciphertext,
                )
                .expect("seal");
            let tag: [u8; TAG_LEN] = tag.as_ref().try_into().expect("tag");

            let mut out = Vec::with_capacity(3 + plaintext.len());
            out.extend_from_slice(b"abc");
            opener
                .open_into(&nonce, &aad, &ciphertext, &tag, &mut out)
                .expect("open");
            assert_eq!(&out[..3], b"abc");
            assert!(out[3..] == plaintext[..]);

            let mut out = Vec::with_capacity(plaintext.len());
            for flip in [0, 500, 999] {
                let mut bad = ciphertext.clone();
                bad[flip] ^= 1;
                let result = opener.open_into(&nonce, &aad, &bad, &tag, &mut out);
                assert_eq!((result, out.len()), (Err(Unspecified), 0));
            }
            let mut bad_tag = tag;
            bad_tag[15] ^= 0x80;
            let result = opener.open_into(&nonce, &aad, &ciphertext, &bad_tag, &mut out);
            assert_eq!(result, Err(Unspecified));
            let result = opener.open_into(&[8; NONCE_LEN], &aad, &ciphertext, &tag, &mut out);
            assert_eq!(result, Err(Unspecified));
            let result = opener.open_into(&nonce, &aad[..4], &ciphertext, &tag, &mut out);
            assert_eq!(result, Err(Unspecified));
            assert!(out.is_empty());

            // No room: refused before anything is written.
            let mut small = Vec::with_capacity(plaintext.len() - 1);
            let result = opener.open_into(&nonce, &aad, &ciphertext, &tag, &mut small);
            assert_eq!((result, small.len()), (Err(Unspecified), 0));
        }
        assert!(GcmOpenKey::new(&[0; 24]).is_err());
    }
}
