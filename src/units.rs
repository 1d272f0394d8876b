//! Sizes and rates as operators write them on command lines (`64MiB`, `1G`, `4096`,
//! `10MiB` per second): binary units, an optional `B` or `iB`. One parser for every flag
//! that takes a size.

/// Parses sizes such as `1GiB`, `512MiB`, `64M`, `4096`: binary units, optional `B`/`iB`.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Parses a rate in bytes per second (`10MiB`, `500K`; `0` = unlimited).
pub fn parse_rate(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_suffix("/s").unwrap_or(text);
    parse_byte_size(text)
}

/// `-bwlimit` and `ctl bwlimit`, as (down, up) bytes per second, 0 = no limit. A single
/// `RATE` limits the rate blocks are read at (so also copied at, whatever the replicas);
/// `UP:DOWN` limits bytes sent (all replicas together) and bytes received separately.
/// Empty means no limit.
pub fn parse_bwlimit(text: &str) -> Option<(u64, u64)> {
    let text = text.trim();
    if text.is_empty() {
        return Some((0, 0));
    }
    match text.split_once(':') {
        Some((up, down)) => Some((parse_rate(down)?, parse_rate(up)?)),
        None => Some((parse_rate(text)?, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_byte_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_byte_size("64m"), Some(64 << 20));
        assert_eq!(parse_byte_size("4096"), Some(4096));
        assert_eq!(parse_byte_size("1.5G"), None);
        assert_eq!(parse_byte_size("G"), None);
        assert_eq!(parse_byte_size("99999999999T"), None);
        assert_eq!(parse_rate("10MiB/s"), Some(10 << 20));
        assert_eq!(parse_rate("0"), Some(0));
        assert_eq!(parse_bwlimit("10MiB"), Some((10 << 20, 0)));
        assert_eq!(parse_bwlimit("1MiB/s:2MiB/s"), Some((2 << 20, 1 << 20)));
        assert_eq!(parse_bwlimit(""), Some((0, 0)));
        assert_eq!(parse_bwlimit("fast"), None);
    }
}
