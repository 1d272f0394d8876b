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

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// `value / unit` with the remainder as decimals, trailing zeros dropped.
        fn fraction(f: &mut std::fmt::Formatter<'_>, value: u128, unit: u128) -> std::fmt::Result {
            let (whole, mut rem) = (value / unit, value % unit);
            write!(f, "{whole}")?;
            if rem == 0 {
                return Ok(());
            }
            let mut digits = unit.ilog10() as usize;
            while rem % 10 == 0 {
                rem /= 10;
                digits -= 1;
            }
            write!(f, ".{rem:0digits$}")
        }
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        if ns < 1_000 {
            return write!(f, "{ns}ns");
        }
        if ns < 1_000_000 {
            fraction(f, ns, 1_000)?;
            return f.write_str("µs");
        }
        if ns < 1_000_000_000 {
            fraction(f, ns, 1_000_000)?;
            return f.write_str("ms");
        }
        let hours = ns / 3_600_000_000_000;
        let minutes = (ns / 60_000_000_000) % 60;
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        fraction(f, ns % 60_000_000_000, 1_000_000_000)?;
        f.write_str("s")
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
    }

    proptest! {
    #[test]
    fn duration_round_trip(ns in 0u64..(i64::MAX as u64)) {
        let d = Duration::from_nanos(ns);
        prop_assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
    }
    }
}
