//! Bundle ids: a UTC stamp `YYYYMMDDTHHMMSSZ`, with `-1`, `-2`… when taken.

use std::fmt;

use jiff::Timestamp;

/// A parsed bundle id; orders by time, then suffix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleId {
    stamp: String,
    suffix: u32,
}

impl BundleId {
    /// The id for a bundle created at `time` (whole seconds, UTC), without suffix.
    pub fn at(time: Timestamp) -> BundleId {
        BundleId {
            stamp: time.strftime("%Y%m%dT%H%M%SZ").to_string(),
            suffix: 0,
        }
    }

    /// Whether both ids are of the same second (whatever their suffixes).
    pub fn same_second(&self, other: &BundleId) -> bool {
        self.stamp == other.stamp
    }

    /// The suffix (`0`: none).
    pub fn suffix(&self) -> u32 {
        self.suffix
    }

    /// The same stamp with suffix `n` (`0` means none).
    pub fn with_suffix(&self, n: u32) -> BundleId {
        BundleId {
            stamp: self.stamp.clone(),
            suffix: n,
        }
    }

    /// Parses a folder name; `None` when it is not an id.
    pub fn parse(text: &str) -> Option<BundleId> {
        let (stamp, suffix) = match text.split_once('-') {
            Some((stamp, n)) => {
                if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (stamp, n.parse().ok()?)
            }
            None => (text, 0),
        };
        let b = stamp.as_bytes();
        let shape = b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
        if !shape {
            return None;
        }
        jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", &stamp[..15]).ok()?;
        Some(BundleId {
            stamp: stamp.to_string(),
            suffix,
        })
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix == 0 {
            f.write_str(&self.stamp)
        } else {
            write!(f, "{}-{}", self.stamp, self.suffix)
        }
    }
}

/// RFC 3339 UTC form of `time`, whole seconds: `2026-11-23T17:30:00Z`.
pub fn rfc3339(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order() {
        let t: Timestamp = "2026-11-23T17:30:00.75Z".parse().unwrap();
        let id = BundleId::at(t);
        assert_eq!(id.to_string(), "20261123T173000Z");
        assert_eq!(rfc3339(t), "2026-11-23T17:30:00Z");
        assert_eq!(BundleId::parse("20261123T173000Z"), Some(id.clone()));
        let s2 = BundleId::parse("20261123T173000Z-2").unwrap();
        let s10 = BundleId::parse("20261123T173000Z-10").unwrap();
        assert!(id < s2 && s2 < s10);
        assert_eq!(s10.to_string(), "20261123T173000Z-10");
    }

    #[test]
    fn non_ids_are_rejected() {
        for bad in [
            "",
            ".staging-20261123T173000Z-1",
            "20261123T173000",
            "20261323T173000Z",
            "20261123T173000Z-",
            "20261123T173000Z-01",
            "20261123X173000Z",
            "latest",
        ] {
            assert_eq!(BundleId::parse(bad), None, "{bad}");
        }
    }
}
