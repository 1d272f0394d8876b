//! x86-64 multi-lane MD5 kernels: 4 lanes (SSE2), 8 lanes (AVX2), 16 lanes (AVX-512F).
//!
//! MD5 cannot be vectorised within one message (each step needs the previous one), but the
//! same step applied to N independent messages is N-wide SIMD: lane `l` of every vector
//! register belongs to message `l`. Each kernel loads one 64-byte block from each lane's
//! input, transposes the N×16 words so that vector `j` holds message word `j` of every lane,
//! runs the 64 steps of [`super::rounds`] on vectors, and adds the chaining values, for
//! `blocks` blocks in a row without leaving the function (state stays in registers).
//!
//! Written with `std::arch` rather than taken from a crate (`md5-simd`, `md5-many`) because
//! the engine needs exactly this contract (arbitrary per-lane slices, state in and out,
//! run-time dispatch on stable Rust) and the code is small enough to audit; see `mod.rs`.
//!
//! Safety model: the `compress_*` functions are safe. They check that every input holds at
//! least `blocks * 64` bytes and that the CPU has the feature, then call the
//! `#[target_feature]` body, which only reads through bounds-checked 64-byte sub-slices.
//!
//! This is one of the few places the workspace allows `unsafe` (`unsafe_code` is denied
//! everywhere else): intrinsics are `unsafe fn`s, and every block says why its call is sound.
#![allow(unsafe_code)]

use super::rounds::md5_rounds;
use std::arch::x86_64::*;

/// Panics unless every lane's input holds `blocks` whole blocks (a bug in the scheduler).
#[inline]
fn assert_inputs_hold(inputs: &[&[u8]], blocks: usize) {
    let needed = blocks.checked_mul(64).expect("block count overflows usize");
    assert!(
        inputs.iter().all(|input| input.len() >= needed),
        "md5 lane kernel: an input is shorter than {blocks} blocks"
    );
}

/// `rows[l]` for `l` in 0..N laid out so that `cols[j][l] = states[l][j]`.
#[inline(always)]
fn transpose_states<const N: usize>(states: &[[u32; 4]; N]) -> [[u32; N]; 4] {
    let mut cols = [[0u32; N]; 4];
    for (lane, state) in states.iter().enumerate() {
        for (col, word) in cols.iter_mut().zip(state) {
            col[lane] = *word;
        }
    }
    cols
}

#[inline(always)]
fn untranspose_states<const N: usize>(cols: &[[u32; N]; 4], states: &mut [[u32; 4]; N]) {
    for (lane, state) in states.iter_mut().enumerate() {
        for (word, col) in state.iter_mut().zip(cols) {
            *word = col[lane];
        }
    }
}

/// The 64 bytes of block `index` of `input`. The kernels' callers checked the length, so the
/// slice index never fails; it is kept as the memory-safety backstop of the vector loads.
#[inline(always)]
fn block_of(input: &[u8], index: usize) -> &[u8; 64] {
    let start = index * 64;
    let block: &[u8] = &input[start..start + 64];
    match block.try_into() {
        Ok(block) => block,
        Err(_) => unreachable!("a 64-byte slice converts to [u8; 64]"),
    }
}

// ---------------------------------------------------------------------------------------
// SSE2, 4 lanes.

/// Advances 4 MD5 states by `blocks` blocks each; lane `l` reads `inputs[l]`.
pub(super) fn compress_sse2(states: &mut [[u32; 4]; 4], inputs: &[&[u8]; 4], blocks: usize) {
    assert_inputs_hold(inputs, blocks);
    // SAFETY: SSE2 is part of the x86-64 baseline, so the target feature is always present;
    // the inputs hold `blocks` blocks (asserted above), which is the body's only precondition.
    unsafe { compress_sse2_body(states, inputs, blocks) }
}

#[target_feature(enable = "sse2")]
fn compress_sse2_body(states: &mut [[u32; 4]; 4], inputs: &[&[u8]; 4], blocks: usize) {
    let cols = transpose_states(states);
    // SAFETY: each `cols[j]` is a `[u32; 4]`, i.e. 16 readable bytes; loadu has no alignment
    // requirement.
    let (mut sa, mut sb, mut sc, mut sd) = unsafe {
        (
            _mm_loadu_si128(cols[0].as_ptr().cast()),
            _mm_loadu_si128(cols[1].as_ptr().cast()),
            _mm_loadu_si128(cols[2].as_ptr().cast()),
            _mm_loadu_si128(cols[3].as_ptr().cast()),
        )
    };
    let ones = _mm_set1_epi32(-1);
    for index in 0..blocks {
        let mut w = [_mm_setzero_si128(); 16];
        for quarter in 0..4 {
            let mut rows = [_mm_setzero_si128(); 4];
            for (row, input) in rows.iter_mut().zip(inputs) {
                let block = block_of(input, index);
                // SAFETY: `block` is 64 readable bytes and `quarter * 16 + 16 <= 64`.
                *row = unsafe { _mm_loadu_si128(block.as_ptr().add(quarter * 16).cast()) };
            }
            let t0 = _mm_unpacklo_epi32(rows[0], rows[1]);
            let t1 = _mm_unpackhi_epi32(rows[0], rows[1]);
            let t2 = _mm_unpacklo_epi32(rows[2], rows[3]);
            let t3 = _mm_unpackhi_epi32(rows[2], rows[3]);
            w[quarter * 4] = _mm_unpacklo_epi64(t0, t2);
            w[quarter * 4 + 1] = _mm_unpackhi_epi64(t0, t2);
            w[quarter * 4 + 2] = _mm_unpacklo_epi64(t1, t3);
            w[quarter * 4 + 3] = _mm_unpackhi_epi64(t1, t3);
        }
        let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
        macro_rules! rotl_add {
            (@base $a_base:expr, $a:ident, $b:ident, $fx:expr, $s:expr) => {
                // a + (M + K) does not depend on the newest word, so it is summed first.
                let sum = _mm_add_epi32($fx, $a_base);
                let rotated = _mm_or_si128(
                    _mm_slli_epi32::<$s>(sum),
                    _mm_srli_epi32::<{ 32 - $s }>(sum),
                );
                $a = _mm_add_epi32($b, rotated);
            };
            ($a:ident, $b:ident, $fx:expr, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(@base _mm_add_epi32($a, _mm_add_epi32(w[$m], _mm_set1_epi32($k as i32))), $a, $b, $fx, $s);
            };
        }
        macro_rules! step {
            (f, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(
                    $a,
                    $b,
                    _mm_xor_si128($d, _mm_and_si128($b, _mm_xor_si128($c, $d))),
                    $m,
                    $k,
                    $s
                );
            };
            (g, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                // G = (c & !d) + (b & d): the first term joins a + (M + K) off the chain.
                rotl_add!(@base _mm_add_epi32(_mm_add_epi32($a, _mm_add_epi32(w[$m], _mm_set1_epi32($k as i32))), _mm_andnot_si128($d, $c)), $a, $b, _mm_and_si128($b, $d), $s);
            };
            (h, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                rotl_add!($a, $b, _mm_xor_si128(_mm_xor_si128($b, $c), $d), $m, $k, $s);
            };
            (i, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(
                    $a,
                    $b,
                    _mm_xor_si128($c, _mm_or_si128($b, _mm_xor_si128($d, ones))),
                    $m,
                    $k,
                    $s
                );
            };
        }
        md5_rounds!(step, a, b, c, d);
        sa = _mm_add_epi32(sa, a);
        sb = _mm_add_epi32(sb, b);
        sc = _mm_add_epi32(sc, c);
        sd = _mm_add_epi32(sd, d);
    }
    let mut cols = [[0u32; 4]; 4];
    for (col, vector) in cols.iter_mut().zip([sa, sb, sc, sd]) {
        // SAFETY: `col` is a `[u32; 4]`, 16 writable bytes; storeu has no alignment requirement.
        unsafe { _mm_storeu_si128(col.as_mut_ptr().cast(), vector) };
    }
    untranspose_states(&cols, states);
}

// ---------------------------------------------------------------------------------------
// AVX2, 8 lanes.

/// Advances 8 MD5 states by `blocks` blocks each; lane `l` reads `inputs[l]`.
/// Panics if the CPU lacks AVX2 (the dispatcher only calls it when detected).
pub(super) fn compress_avx2(states: &mut [[u32; 4]; 8], inputs: &[&[u8]; 8], blocks: usize) {
    assert_inputs_hold(inputs, blocks);
    assert!(
        std::arch::is_x86_feature_detected!("avx2"),
        "md5: AVX2 kernel called on a CPU without AVX2"
    );
    // SAFETY: AVX2 was detected just above; the inputs hold `blocks` blocks (asserted above),
    // which is the body's only precondition.
    unsafe { compress_avx2_body(states, inputs, blocks) }
}

/// Transposes 8 rows of 8 words: `out[j]` word `l` = `rows[l]` word `j`.
#[target_feature(enable = "avx2")]
fn transpose8(rows: &[__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(rows[0], rows[1]);
    let t1 = _mm256_unpackhi_epi32(rows[0], rows[1]);
    let t2 = _mm256_unpacklo_epi32(rows[2], rows[3]);
    let t3 = _mm256_unpackhi_epi32(rows[2], rows[3]);
    let t4 = _mm256_unpacklo_epi32(rows[4], rows[5]);
    let t5 = _mm256_unpackhi_epi32(rows[4], rows[5]);
    let t6 = _mm256_unpacklo_epi32(rows[6], rows[7]);
    let t7 = _mm256_unpackhi_epi32(rows[6], rows[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

#[target_feature(enable = "avx2")]
fn compress_avx2_body(states: &mut [[u32; 4]; 8], inputs: &[&[u8]; 8], blocks: usize) {
    let cols = transpose_states(states);
    // SAFETY: each `cols[j]` is a `[u32; 8]`, i.e. 32 readable bytes; loadu has no alignment
    // requirement.
    let (mut sa, mut sb, mut sc, mut sd) = unsafe {
        (
            _mm256_loadu_si256(cols[0].as_ptr().cast()),
            _mm256_loadu_si256(cols[1].as_ptr().cast()),
            _mm256_loadu_si256(cols[2].as_ptr().cast()),
            _mm256_loadu_si256(cols[3].as_ptr().cast()),
        )
    };
    let ones = _mm256_set1_epi32(-1);
    for index in 0..blocks {
        let mut low_rows = [_mm256_setzero_si256(); 8];
        let mut high_rows = [_mm256_setzero_si256(); 8];
        for lane in 0..8 {
            let block = block_of(inputs[lane], index);
            // SAFETY: `block` is 64 readable bytes: words 0..8 at offset 0, words 8..16 at 32.
            unsafe {
                low_rows[lane] = _mm256_loadu_si256(block.as_ptr().cast());
                high_rows[lane] = _mm256_loadu_si256(block.as_ptr().add(32).cast());
            }
        }
        let low = transpose8(&low_rows);
        let high = transpose8(&high_rows);
        let w = [
            low[0], low[1], low[2], low[3], low[4], low[5], low[6], low[7], high[0], high[1],
            high[2], high[3], high[4], high[5], high[6], high[7],
        ];
        let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
        macro_rules! rotl_add {
            (@base $a_base:expr, $a:ident, $b:ident, $fx:expr, $s:expr) => {
                // a + (M + K) does not depend on the newest word, so it is summed first.
                let sum = _mm256_add_epi32($fx, $a_base);
                let rotated = _mm256_or_si256(
                    _mm256_slli_epi32::<$s>(sum),
                    _mm256_srli_epi32::<{ 32 - $s }>(sum),
                );
                $a = _mm256_add_epi32($b, rotated);
            };
            ($a:ident, $b:ident, $fx:expr, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(@base _mm256_add_epi32($a, _mm256_add_epi32(w[$m], _mm256_set1_epi32($k as i32))), $a, $b, $fx, $s);
            };
        }
        macro_rules! step {
            (f, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(
                    $a,
                    $b,
                    _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d))),
                    $m,
                    $k,
                    $s
                );
            };
            (g, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                // G = (c & !d) + (b & d): the first term joins a + (M + K) off the chain.
                rotl_add!(@base _mm256_add_epi32(_mm256_add_epi32($a, _mm256_add_epi32(w[$m], _mm256_set1_epi32($k as i32))), _mm256_andnot_si256($d, $c)), $a, $b, _mm256_and_si256($b, $d), $s);
            };
            (h, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(
                    $a,
                    $b,
                    _mm256_xor_si256(_mm256_xor_si256($b, $c), $d),
                    $m,
                    $k,
                    $s
                );
            };
            (i, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                rotl_add!(
                    $a,
                    $b,
                    _mm256_xor_si256($c, _mm256_or_si256($b, _mm256_xor_si256($d, ones))),
                    $m,
                    $k,
                    $s
                );
            };
        }
        md5_rounds!(step, a, b, c, d);
        sa = _mm256_add_epi32(sa, a);
        sb = _mm256_add_epi32(sb, b);
        sc = _mm256_add_epi32(sc, c);
        sd = _mm256_add_epi32(sd, d);
    }
    let mut cols = [[0u32; 8]; 4];
    for (col, vector) in cols.iter_mut().zip([sa, sb, sc, sd]) {
        // SAFETY: `col` is a `[u32; 8]`, 32 writable bytes; storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(col.as_mut_ptr().cast(), vector) };
    }
    untranspose_states(&cols, states);
}

// ---------------------------------------------------------------------------------------
// AVX-512F, 16 lanes.

/// Advances 16 MD5 states by `blocks` blocks each; lane `l` reads `inputs[l]`.
/// Panics if the CPU lacks AVX-512F (the dispatcher only calls it when detected).
pub(super) fn compress_avx512(states: &mut [[u32; 4]; 16], inputs: &[&[u8]; 16], blocks: usize) {
    assert_inputs_hold(inputs, blocks);
    assert!(
        std::arch::is_x86_feature_detected!("avx512f"),
        "md5: AVX-512 kernel called on a CPU without AVX-512F"
    );
    // SAFETY: AVX-512F was detected just above; the inputs hold `blocks` blocks (asserted
    // above), which is the body's only precondition.
    unsafe { compress_avx512_body::<1>(states, inputs, blocks) }
}

/// Transposes 16 rows of 16 words: `out[j]` word `l` = `rows[l]` word `j`.
/// Two unpack stages transpose 4×4 words inside each 128-bit block, two 128-bit shuffle
/// stages transpose the 4×4 grid of blocks.
#[target_feature(enable = "avx512f")]
fn transpose16(rows: &[__m512i; 16]) -> [__m512i; 16] {
    // u[g][k], 128-bit block q = words 4q+k of rows 4g..4g+4.
    let mut u = [[_mm512_setzero_si512(); 4]; 4];
    for (g, group) in u.iter_mut().enumerate() {
        let (r0, r1, r2, r3) = (
            rows[4 * g],
            rows[4 * g + 1],
            rows[4 * g + 2],
            rows[4 * g + 3],
        );
        let t0 = _mm512_unpacklo_epi32(r0, r1);
        let t1 = _mm512_unpackhi_epi32(r0, r1);
        let t2 = _mm512_unpacklo_epi32(r2, r3);
        let t3 = _mm512_unpackhi_epi32(r2, r3);
        group[0] = _mm512_unpacklo_epi64(t0, t2);
        group[1] = _mm512_unpackhi_epi64(t0, t2);
        group[2] = _mm512_unpacklo_epi64(t1, t3);
        group[3] = _mm512_unpackhi_epi64(t1, t3);
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for k in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x44>(u[0][k], u[1][k]);
        let v1 = _mm512_shuffle_i32x4::<0xEE>(u[0][k], u[1][k]);
        let v2 = _mm512_shuffle_i32x4::<0x44>(u[2][k], u[3][k]);
        let v3 = _mm512_shuffle_i32x4::<0xEE>(u[2][k], u[3][k]);
        out[k] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[4 + k] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
        out[8 + k] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + k] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
    }
    out
}

/// `G` groups of 16 lanes: `states` and `inputs` hold `16 * G` lanes (asserted).
/// Only `G = 1` is used: two interleaved groups (32 lanes) were measured on Zen 5 at
/// 5.3 GiB/s against 6.6 GiB/s for one group over the same 32 streams, i.e. one group is
/// already bound by 512-bit issue throughput, not by the step latency; `G` is kept so the
/// experiment can be repeated on other CPUs by adding a wrapper.
#[target_feature(enable = "avx512f")]
fn compress_avx512_body<const G: usize>(states: &mut [[u32; 4]], inputs: &[&[u8]], blocks: usize) {
    assert!(
        states.len() == 16 * G && inputs.len() == 16 * G,
        "md5: AVX-512 kernel lane count"
    );
    // s[word][group]: chaining word `word` of the group's 16 lanes.
    let mut s = [[_mm512_setzero_si512(); G]; 4];
    for (group, lanes) in states.chunks_exact(16).enumerate() {
        let mut cols = [[0u32; 16]; 4];
        for (lane, state) in lanes.iter().enumerate() {
            for (col, word) in cols.iter_mut().zip(state) {
                col[lane] = *word;
            }
        }
        for (word, col) in cols.iter().enumerate() {
            // SAFETY: `col` is a `[u32; 16]`, 64 readable bytes; loadu has no alignment
            // requirement.
            s[word][group] = unsafe { _mm512_loadu_si512(col.as_ptr().cast()) };
        }
    }
    for index in 0..blocks {
        let mut w = [[_mm512_setzero_si512(); 16]; G];
        for (group_words, group_inputs) in w.iter_mut().zip(inputs.chunks_exact(16)) {
            let mut rows = [_mm512_setzero_si512(); 16];
            for (row, input) in rows.iter_mut().zip(group_inputs) {
                let block = block_of(input, index);
                // SAFETY: `block` is 64 readable bytes, one unaligned 512-bit load.
                *row = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
            }
            *group_words = transpose16(&rows);
        }
        let (mut a, mut b, mut c, mut d) = (s[0], s[1], s[2], s[3]);
        // Ternary-logic truth tables, operands (x, y, z) -> bit 4x+2y+z of the immediate:
        // 0xCA = x ? y : z, 0x96 = x ^ y ^ z, 0x39 = y ^ (x | !z).
        macro_rules! step {
            (@sum $imm:expr, ($x:ident, $y:ident, $z:ident), $a:ident, $b:ident, $m:expr, $k:expr, $s:expr) => {
                for g in 0..G {
                    // a + (M + K) does not depend on the newest word, so it is summed first.
                    let a_base = _mm512_add_epi32($a[g], _mm512_add_epi32(w[g][$m], _mm512_set1_epi32($k as i32)));
                    let fx = _mm512_ternarylogic_epi32::<$imm>($x[g], $y[g], $z[g]);
                    $a[g] = _mm512_add_epi32($b[g], _mm512_rol_epi32::<$s>(_mm512_add_epi32(fx, a_base)));
                }
            };
            (f, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                step!(@sum 0xCA, ($b, $c, $d), $a, $b, $m, $k, $s);
            };
            (g, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                step!(@sum 0xCA, ($d, $b, $c), $a, $b, $m, $k, $s);
            };
            (h, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                step!(@sum 0x96, ($b, $c, $d), $a, $b, $m, $k, $s);
            };
            (i, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
                step!(@sum 0x39, ($b, $c, $d), $a, $b, $m, $k, $s);
            };
        }
        md5_rounds!(step, a, b, c, d);
        for (word, value) in s.iter_mut().zip([a, b, c, d]) {
            for (sum, add) in word.iter_mut().zip(value) {
                *sum = _mm512_add_epi32(*sum, add);
            }
        }
    }
    for (group, lanes) in states.chunks_exact_mut(16).enumerate() {
        let mut cols = [[0u32; 16]; 4];
        for (word, col) in cols.iter_mut().enumerate() {
            // SAFETY: `col` is a `[u32; 16]`, 64 writable bytes; storeu has no alignment
            // requirement.
            unsafe { _mm512_storeu_si512(col.as_mut_ptr().cast(), s[word][group]) };
        }
        for (lane, state) in lanes.iter_mut().enumerate() {
            for (word, col) in state.iter_mut().zip(&cols) {
                *word = col[lane];
            }
        }
    }
}
