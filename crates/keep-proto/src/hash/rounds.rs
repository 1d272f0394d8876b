//! The 64 MD5 steps (RFC 1321 §3.4) written out once, shared by every backend.
//!
//! Each backend (scalar `u32`, SSE2, AVX2, AVX-512 vectors) supplies a `step!` macro that
//! performs one step `a = b + rotl(a + FN(b, c, d) + M[m] + k, s)` with its own operations;
//! this macro feeds it the round function, the register rotation, the message word index,
//! the additive constant and the rotation, so the schedule cannot drift between backends.
//! The shift amounts must be literals (SSE2/AVX2 rotate as `slli::<s> | srli::<32 - s>`,
//! which stable Rust only accepts with a literal), hence a macro rather than a table.

/// Expands to the 64 steps of one MD5 block. `$step!(fn, a, b, c, d, m, k, s)` must update
/// `a` in place; the caller adds the chaining value afterwards.
macro_rules! md5_rounds {
    ($step:ident, $a:ident, $b:ident, $c:ident, $d:ident) => {
        // Round 1: F.
        $step!(f, $a, $b, $c, $d, 0, 0xd76aa478_u32, 7);
        $step!(f, $d, $a, $b, $c, 1, 0xe8c7b756_u32, 12);
        $step!(f, $c, $d, $a, $b, 2, 0x242070db_u32, 17);
        $step!(f, $b, $c, $d, $a, 3, 0xc1bdceee_u32, 22);
        $step!(f, $a, $b, $c, $d, 4, 0xf57c0faf_u32, 7);
        $step!(f, $d, $a, $b, $c, 5, 0x4787c62a_u32, 12);
        $step!(f, $c, $d, $a, $b, 6, 0xa8304613_u32, 17);
        $step!(f, $b, $c, $d, $a, 7, 0xfd469501_u32, 22);
        $step!(f, $a, $b, $c, $d, 8, 0x698098d8_u32, 7);
        $step!(f, $d, $a, $b, $c, 9, 0x8b44f7af_u32, 12);
        $step!(f, $c, $d, $a, $b, 10, 0xffff5bb1_u32, 17);
        $step!(f, $b, $c, $d, $a, 11, 0x895cd7be_u32, 22);
        $step!(f, $a, $b, $c, $d, 12, 0x6b901122_u32, 7);
        $step!(f, $d, $a, $b, $c, 13, 0xfd987193_u32, 12);
        $step!(f, $c, $d, $a, $b, 14, 0xa679438e_u32, 17);
        $step!(f, $b, $c, $d, $a, 15, 0x49b40821_u32, 22);
        // Round 2: G.
        $step!(g, $a, $b, $c, $d, 1, 0xf61e2562_u32, 5);
        $step!(g, $d, $a, $b, $c, 6, 0xc040b340_u32, 9);
        $step!(g, $c, $d, $a, $b, 11, 0x265e5a51_u32, 14);
        $step!(g, $b, $c, $d, $a, 0, 0xe9b6c7aa_u32, 20);
        $step!(g, $a, $b, $c, $d, 5, 0xd62f105d_u32, 5);
        $step!(g, $d, $a, $b, $c, 10, 0x02441453_u32, 9);
        $step!(g, $c, $d, $a, $b, 15, 0xd8a1e681_u32, 14);
        $step!(g, $b, $c, $d, $a, 4, 0xe7d3fbc8_u32, 20);
        $step!(g, $a, $b, $c, $d, 9, 0x21e1cde6_u32, 5);
        $step!(g, $d, $a, $b, $c, 14, 0xc33707d6_u32, 9);
        $step!(g, $c, $d, $a, $b, 3, 0xf4d50d87_u32, 14);
        $step!(g, $b, $c, $d, $a, 8, 0x455a14ed_u32, 20);
        $step!(g, $a, $b, $c, $d, 13, 0xa9e3e905_u32, 5);
        $step!(g, $d, $a, $b, $c, 2, 0xfcefa3f8_u32, 9);
        $step!(g, $c, $d, $a, $b, 7, 0x676f02d9_u32, 14);
        $step!(g, $b, $c, $d, $a, 12, 0x8d2a4c8a_u32, 20);
        // Round 3: H.
        $step!(h, $a, $b, $c, $d, 5, 0xfffa3942_u32, 4);
        $step!(h, $d, $a, $b, $c, 8, 0x8771f681_u32, 11);
        $step!(h, $c, $d, $a, $b, 11, 0x6d9d6122_u32, 16);
        $step!(h, $b, $c, $d, $a, 14, 0xfde5380c_u32, 23);
        $step!(h, $a, $b, $c, $d, 1, 0xa4beea44_u32, 4);
        $step!(h, $d, $a, $b, $c, 4, 0x4bdecfa9_u32, 11);
        $step!(h, $c, $d, $a, $b, 7, 0xf6bb4b60_u32, 16);
        $step!(h, $b, $c, $d, $a, 10, 0xbebfbc70_u32, 23);
        $step!(h, $a, $b, $c, $d, 13, 0x289b7ec6_u32, 4);
        $step!(h, $d, $a, $b, $c, 0, 0xeaa127fa_u32, 11);
        $step!(h, $c, $d, $a, $b, 3, 0xd4ef3085_u32, 16);
        $step!(h, $b, $c, $d, $a, 6, 0x04881d05_u32, 23);
        $step!(h, $a, $b, $c, $d, 9, 0xd9d4d039_u32, 4);
        $step!(h, $d, $a, $b, $c, 12, 0xe6db99e5_u32, 11);
        $step!(h, $c, $d, $a, $b, 15, 0x1fa27cf8_u32, 16);
        $step!(h, $b, $c, $d, $a, 2, 0xc4ac5665_u32, 23);
        // Round 4: I.
        $step!(i, $a, $b, $c, $d, 0, 0xf4292244_u32, 6);
        $step!(i, $d, $a, $b, $c, 7, 0x432aff97_u32, 10);
        $step!(i, $c, $d, $a, $b, 14, 0xab9423a7_u32, 15);
        $step!(i, $b, $c, $d, $a, 5, 0xfc93a039_u32, 21);
        $step!(i, $a, $b, $c, $d, 12, 0x655b59c3_u32, 6);
        $step!(i, $d, $a, $b, $c, 3, 0x8f0ccc92_u32, 10);
        $step!(i, $c, $d, $a, $b, 10, 0xffeff47d_u32, 15);
        $step!(i, $b, $c, $d, $a, 1, 0x85845dd1_u32, 21);
        $step!(i, $a, $b, $c, $d, 8, 0x6fa87e4f_u32, 6);
        $step!(i, $d, $a, $b, $c, 15, 0xfe2ce6e0_u32, 10);
        $step!(i, $c, $d, $a, $b, 6, 0xa3014314_u32, 15);
        $step!(i, $b, $c, $d, $a, 13, 0x4e0811a1_u32, 21);
        $step!(i, $a, $b, $c, $d, 4, 0xf7537e82_u32, 6);
        $step!(i, $d, $a, $b, $c, 11, 0xbd3af235_u32, 10);
        $step!(i, $c, $d, $a, $b, 2, 0x2ad7d2bb_u32, 15);
        $step!(i, $b, $c, $d, $a, 9, 0xeb86d391_u32, 21);
    };
}
pub(super) use md5_rounds;
