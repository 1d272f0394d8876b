//! Go durations: `time.ParseDuration` (for `-src-blob-signature-ttl 336h`) and
//! `Duration.String()` (keep-rsync prints its ETA with it, e.g. `1m2.5s`).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("negative duration {0:?}")]
    Negative(String),
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses Go's duration syntax: `[-+]` then one or more `<decimal>[.<fraction>]<unit>`;
/// `0` alone is allowed. Negative durations are refused (no flag here takes one).
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.chars().take(40).collect());
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_part = &after_dot[..frac_end];
            rest = &after_dot[frac_end..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, s)| *s)
            .ok_or_else(invalid)?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut frac_scale = scale;
        for digit in frac_part.bytes().take(30) {
            frac_scale /= 10;
            value += u128::from(digit - b'0') * frac_scale;
        }
        total_ns = total_ns.checked_add(value).ok_or_else(invalid)?;
        if total_ns > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    if negative && total_ns > 0 {
        return Err(DurationError::Negative(text.chars().take(40).collect()));
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// Formats like Go's `Duration.String()`: `0s`, `1.5µs`, `500ms`, `1m2.5s`, `336h0m0s`.
pub fn format_go_duration(duration: Duration) -> String {
    GoDuration(duration).to_string()
}

/// [`format_go_duration`] as a `Display` value, written straight into a line being built
/// (the progress line has one per block) without a `String` of its own.
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Writes the duration to `out`. Integers go through `itoa`, not the formatter: this is
    /// in the per-block log line, where `{}` on integers (and, before, u128 arithmetic) cost
    /// more than the rest of the line.
    pub fn write_to(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let mut integer = itoa::Buffer::new();
        /// `value / unit` with the remainder as decimals, trailing zeros dropped.
        fn fraction(
            out: &mut impl std::fmt::Write,
            integer: &mut itoa::Buffer,
            value: u64,
            unit: u64,
        ) -> std::fmt::Result {
            let (whole, mut rem) = (value / unit, value % unit);
            out.write_str(integer.format(whole))?;
            if rem == 0 {
                return Ok(());
            }
            let mut digits = unit.ilog10() as usize;
            while rem % 10 == 0 {
                rem /= 10;
                digits -= 1;
            }
            let rem = integer.format(rem);
            out.write_str(".")?;
            for _ in rem.len()..digits {
                out.write_str("0")?;
            }
            out.write_str(rem)
        }
        // In u64 pieces (whole seconds, nanoseconds of the minute), not `as_nanos()`'s u128.
        let seconds = self.0.as_secs();
        let subsec_ns = u64::from(self.0.subsec_nanos());
        if seconds == 0 {
            let ns = subsec_ns;
            if ns == 0 {
                return out.write_str("0s");
            }
            if ns < 1_000 {
                out.write_str(integer.format(ns))?;
                return out.write_str("ns");
            }
            if ns < 1_000_000 {
                fraction(out, &mut integer, ns, 1_000)?;
                return out.write_str("µs");
            }
            fraction(out, &mut integer, ns, 1_000_000)?;
            return out.write_str("ms");
        }
        let hours = seconds / 3600;
        let minutes = (seconds / 60) % 60;
        if hours > 0 {
            out.write_str(integer.format(hours))?;
            out.write_str("h")?;
        }
        if hours > 0 || minutes > 0 {
            out.write_str(integer.format(minutes))?;
            out.write_str("m")?;
        }
        let sub_minute_ns = (seconds % 60) * 1_000_000_000 + subsec_ns;
        fraction(out, &mut integer, sub_minute_ns, 1_000_000_000)?;
        out.write_str("s")
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write_to(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("336h").unwrap(),
            Duration::from_secs(336 * 3600)
        );
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_go_duration("300ms").unwrap(),
            Duration::from_millis(300)
        );
        assert_eq!(parse_go_duration("2µs").unwrap(), Duration::from_micros(2));
        for bad in ["", "5", "5x", "h", "-5s", ".s", "1h-5m", "99999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_millis(62_500)), "1m2.5s");
        assert_eq!(
            format_go_duration(Duration::from_secs(336 * 3600)),
            "336h0m0s"
        );
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(format_go_duration(Duration::from_nanos(12)), "12ns");
        // Inner zeros of the fraction stay, trailing ones go (Go's output).
        assert_eq!(
            format_go_duration(Duration::from_nanos(3_600_001_000_000)),
            "1h0m0.001s"
        );
        assert_eq!(
            format_go_duration(Duration::from_nanos(1_000_001)),
            "1.000001ms"
        );
        assert_eq!(format_go_duration(Duration::from_millis(10_010)), "10.01s");
        assert_eq!(format_go_duration(Duration::from_nanos(1_020)), "1.02µs");
        assert_eq!(
            format_go_duration(Duration::from_secs(3 * 3600 + 7)),
            "3h0m7s"
        );
        // Past Go's own limit (292 years) it goes on counting hours.
        assert_eq!(
            format_go_duration(Duration::new(u64::MAX, 999_999_999)),
            "5124095576030431h0m15.999999999s"
        );
    }

    proptest! {
    #[test]
    fn duration_round_trip(ns in 0u64..(i64::MAX as u64)) {
        let d = Duration::from_nanos(ns);
        prop_assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
    }
    }
}
