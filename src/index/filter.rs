//! Which blocks a job is about, decided from their index lines as the walk reads them:
//! `-size A..B` (bytes or sizes with units, either end open) and `-mtime A..B` on the index
//! mtime, each bound a point in time: an RFC 3339 timestamp, or an age as a Go duration
//! meaning "now minus that" (`-mtime ..720h`: last written more than 30 days ago;
//! `-mtime 24h..`: written in the last day). A block is selected when any of its source
//! copies is (copies of one block on two servers may have different mtimes).

use crate::keep::index_format::IndexEntry;

/// Size and mtime bounds, inclusive; `None` = open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockFilter {
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// Nanoseconds since the epoch.
    pub min_mtime: Option<i64>,
    pub max_mtime: Option<i64>,
    /// The filters as given, for the checkpoint and reports.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{flag} {text:?}: expected A..B (either side may be empty)")]
    Range { flag: &'static str, text: String },
    #[error("{flag} {text:?}: {bound:?} is not a size (e.g. 4096, 1MiB)")]
    Size {
        flag: &'static str,
        text: String,
        bound: String,
    },
    #[error("{flag} {text:?}: {bound:?} is neither an RFC 3339 time (2026-01-31T00:00:00Z) nor an age (720h)")]
    Time {
        flag: &'static str,
        text: String,
        bound: String,
    },
    #[error("{flag} {text:?}: the lower bound is above the upper bound")]
    Empty { flag: &'static str, text: String },
}

fn split_range<'a>(flag: &'static str, text: &'a str) -> Result<(&'a str, &'a str), FilterError> {
    text.split_once("..").ok_or(FilterError::Range {
        flag,
        text: text.to_string(),
    })
}

/// A point in time from an RFC 3339 timestamp or an age (`now` minus a Go duration).
fn time_bound(
    flag: &'static str,
    text: &str,
    bound: &str,
    now_ns: i64,
) -> Result<i64, FilterError> {
    let fail = || FilterError::Time {
        flag,
        text: text.to_string(),
        bound: bound.to_string(),
    };
    if let Ok(age) = crate::gocompat::duration::parse_go_duration(bound) {
        let age = i64::try_from(age.as_nanos()).map_err(|_| fail())?;
        return Ok(now_ns.saturating_sub(age));
    }
    let at: jiff::Timestamp = bound.parse().map_err(|_| fail())?;
    i64::try_from(at.as_nanosecond()).map_err(|_| fail())
}

impl BlockFilter {
    /// Builds the filter from `-size` and `-mtime` texts (empty = not given).
    pub fn parse(size: &str, mtime: &str, now_ns: i64) -> Result<BlockFilter, FilterError> {
        let mut filter = BlockFilter::default();
        let mut text = Vec::new();
        if !size.is_empty() {
            let (low, high) = split_range("-size", size)?;
            let parse = |bound: &str| -> Result<Option<u64>, FilterError> {
                if bound.is_empty() {
                    return Ok(None);
                }
                crate::units::parse_byte_size(bound)
                    .map(Some)
                    .ok_or_else(|| FilterError::Size {
                        flag: "-size",
                        text: size.to_string(),
                        bound: bound.to_string(),
                    })
            };
            filter.min_size = parse(low)?;
            filter.max_size = parse(high)?;
            if let (Some(a), Some(b)) = (filter.min_size, filter.max_size) {
                if a > b {
                    return Err(FilterError::Empty {
                        flag: "-size",
                        text: size.to_string(),
                    });
                }
            }
            text.push(format!("size={size}"));
        }
        if !mtime.is_empty() {
            let (low, high) = split_range("-mtime", mtime)?;
            // An age bound is "now minus the age".
            let parse = |bound: &str| -> Result<Option<i64>, FilterError> {
                if bound.is_empty() {
                    return Ok(None);
                }
                time_bound("-mtime", mtime, bound, now_ns).map(Some)
            };
            // `..720h`: up to 720h ago (older); `24h..`: from 24h ago on (newer). With both
            // bounds given, either order means the span between the two instants.
            let (a, b) = (parse(low)?, parse(high)?);
            (filter.min_mtime, filter.max_mtime) = match (a, b) {
                (Some(x), Some(y)) if x > y => (Some(y), Some(x)),
                other => other,
            };
            text.push(format!("mtime={mtime}"));
        }
        filter.text = text.join(" ");
        Ok(filter)
    }

    /// No bound at all.
    pub fn is_empty(&self) -> bool {
        self.min_size.is_none()
            && self.max_size.is_none()
            && self.min_mtime.is_none()
            && self.max_mtime.is_none()
    }

    /// Whether an index line is in range.
    pub fn accepts(&self, entry: &IndexEntry) -> bool {
        self.min_size.is_none_or(|m| entry.size >= m)
            && self.max_size.is_none_or(|m| entry.size <= m)
            && self.min_mtime.is_none_or(|m| entry.mtime_ns >= m)
            && self.max_mtime.is_none_or(|m| entry.mtime_ns <= m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keep::BlockHash;

    const HOUR: i64 = 3_600_000_000_000;
    const NOW: i64 = 1_800_000_000_000_000_000;

    fn entry(size: u64, mtime_ns: i64) -> IndexEntry {
        IndexEntry {
            hash: BlockHash([0; 16]),
            size,
            mtime_ns,
        }
    }

    #[test]
    fn sizes() {
        let f = BlockFilter::parse("1KiB..1MiB", "", NOW).expect("valid");
        assert!(!f.accepts(&entry(1023, 0)));
        assert!(f.accepts(&entry(1024, 0)));
        assert!(f.accepts(&entry(1 << 20, 0)));
        assert!(!f.accepts(&entry((1 << 20) + 1, 0)));
        let f = BlockFilter::parse("64MiB..", "", NOW).expect("valid");
        assert!(f.accepts(&entry(64 << 20, 0)) && !f.accepts(&entry(1, 0)));
        assert!(BlockFilter::parse("..", "", NOW).expect("open").is_empty());
        assert!(BlockFilter::parse("5", "", NOW).is_err());
        assert!(BlockFilter::parse("x..", "", NOW).is_err());
        assert!(BlockFilter::parse("2..1", "", NOW).is_err());
    }

    #[test]
    fn ages_and_timestamps() {
        // Written more than 30 days ago.
        let old = BlockFilter::parse("", "..720h", NOW).expect("valid");
        assert!(old.accepts(&entry(1, NOW - 721 * HOUR)));
        assert!(!old.accepts(&entry(1, NOW - 719 * HOUR)));
        // Written in the last day.
        let new = BlockFilter::parse("", "24h..", NOW).expect("valid");
        assert!(new.accepts(&entry(1, NOW - HOUR)));
        assert!(!new.accepts(&entry(1, NOW - 25 * HOUR)));
        // Between two ages, in either order.
        for text in ["48h..24h", "24h..48h"] {
            let f = BlockFilter::parse("", text, NOW).expect("valid");
            assert!(f.accepts(&entry(1, NOW - 30 * HOUR)), "{text}");
            assert!(!f.accepts(&entry(1, NOW - HOUR)), "{text}");
            assert!(!f.accepts(&entry(1, NOW - 50 * HOUR)), "{text}");
        }
        let f = BlockFilter::parse("", "2024-01-01T00:00:00Z..", NOW).expect("valid");
        assert_eq!(f.min_mtime, Some(1_704_067_200_000_000_000));
        assert!(BlockFilter::parse("", "yesterday..", NOW).is_err());
        assert_eq!(f.text, "mtime=2024-01-01T00:00:00Z..");
    }
}
