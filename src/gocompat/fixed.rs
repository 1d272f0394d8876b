//! Go's `%.2f` for the percentage in keep-rsync's per-block line, written with integers.
//! `{:.2}` on an `f64` runs the general float formatter, which cost more than the rest of
//! the line together; one line is printed per block, so on 4 KiB blocks that showed.

use std::fmt;

/// `f64` with two decimals, rounded exactly as Go's `%.2f` and Rust's `{:.2}` round: the
/// exact binary value, ties to even (`0.125` → `0.12`). Values this fast path does not
/// cover (negative, not finite, 2^46 or more) go to `{:.2}`.
#[derive(Clone, Copy, Debug)]
pub struct TwoDecimals(pub f64);

impl TwoDecimals {
    /// The value times 100, rounded to an integer (ties to even), when it is exact to do so
    /// in a `u64`.
    fn hundredths(self) -> Option<u64> {
        let value = self.0;
        if !(value.is_finite() && value.is_sign_positive() && value < (1u64 << 46) as f64) {
            return None;
        }
        if value == 0.0 {
            return Some(0);
        }
        let bits = value.to_bits();
        let biased_exponent = (bits >> 52) & 0x7ff;
        let fraction = bits & ((1u64 << 52) - 1);
        // value = mantissa * 2^-shift exactly.
        let (mantissa, shift) = if biased_exponent == 0 {
            (fraction, 1074u64)
        } else {
            (
                fraction | (1u64 << 52),
                1075u64.checked_sub(biased_exponent)?,
            )
        };
        // Under 2^46, shift >= 7 (so the value has a fraction to round), and
        // mantissa * 100 < 2^60 fits.
        let scaled = mantissa * 100;
        if shift >= 62 {
            // scaled / 2^shift < 2^60 / 2^62 = 1/4: rounds to 0.
            return Some(0);
        }
        let whole = scaled >> shift;
        let remainder = scaled & ((1u64 << shift) - 1);
        let half = 1u64 << shift.checked_sub(1)?;
        let round_up = remainder > half || (remainder == half && whole % 2 == 1);
        Some(whole + u64::from(round_up))
    }
}

impl TwoDecimals {
    /// Writes the value to `out` (integers through `itoa`, not the formatter).
    pub fn write_to(self, out: &mut impl fmt::Write) -> fmt::Result {
        match self.hundredths() {
            Some(hundredths) => {
                let cents = hundredths % 100;
                out.write_str(itoa::Buffer::new().format(hundredths / 100))?;
                out.write_char('.')?;
                out.write_char(char::from(b'0' + (cents / 10) as u8))?;
                out.write_char(char::from(b'0' + (cents % 10) as u8))
            }
            None => write!(out, "{:.2}", self.0),
        }
    }
}

impl fmt::Display for TwoDecimals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

#[cfg(test)]
mod tests {
    use super::TwoDecimals;

    fn both(value: f64) {
        assert_eq!(
            TwoDecimals(value).to_string(),
            format!("{value:.2}"),
            "{value:e} ({:#x})",
            value.to_bits()
        );
    }

    #[test]
    fn ties_go_to_even_as_go_and_rust_do() {
        for value in [
            0.125,
            0.375,
            3.125,
            1.0 / 32.0 * 100.0,
            2.5,
            0.005,
            0.015,
            0.0,
        ] {
            both(value);
        }
        assert_eq!(TwoDecimals(0.125).to_string(), "0.12");
        assert_eq!(TwoDecimals(0.375).to_string(), "0.38");
    }

    #[test]
    fn every_percentage_of_a_run_matches_the_float_formatter() {
        // keep-rsync's percentage: finished / total * 100, for every finished of some totals
        // (small ones are full of ties), and a sweep through large ones.
        for total in (1u64..=2000).chain([9_999, 65_536, 1_000_003]) {
            let step = (total / 5000).max(1);
            for finished in (0..=total).step_by(step as usize) {
                both(finished as f64 / total as f64 * 100.0);
            }
        }
        for total in [3_000_000_007u64, 1 << 40, u64::MAX / 3] {
            for finished in (0..1000u64).map(|i| total / 1000 * i + i * 7) {
                both(finished as f64 / total as f64 * 100.0);
            }
        }
    }

    #[test]
    fn edges_match_the_float_formatter() {
        let mut bits = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            // xorshift: any bit pattern, so subnormals, huge values and NaN come up too.
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            both(f64::from_bits(bits));
            both(f64::from_bits(bits >> 12) * 1e-3);
            both((bits % 1_000_000_000) as f64 / 1e7);
        }
        for value in [
            f64::MIN_POSITIVE,
            5e-324,
            0.004_999_999_999_999_999,
            0.005_000_000_000_000_001,
            99.995,
            99.994_999_999_999_99,
            100.0,
            (1u64 << 46) as f64,
            (1u64 << 46) as f64 - 0.5,
            f64::INFINITY,
            f64::NAN,
            -0.0,
            -1.5,
        ] {
            both(value);
        }
    }
}
