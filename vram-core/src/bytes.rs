//! Byte counts for humans, used in error messages.

use std::fmt;

/// Displays a byte count as "12.0 GiB (12884901888 bytes)", or "512 bytes"
/// under one KiB, so messages carry both a readable and an exact figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanBytes(pub(crate) u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let n = self.0;
        if n < 1024 {
            return write!(f, "{n} bytes");
        }
        // Precision loss in the float is fine: the exact count follows.
        #[allow(clippy::cast_precision_loss)]
        let mut value = n as f64;
        let mut unit = "bytes";
        for u in UNITS {
            if value < 1024.0 {
                break;
            }
            value /= 1024.0;
            unit = u;
        }
        write!(f, "{value:.1} {unit} ({n} bytes)")
    }
}

#[cfg(test)]
mod tests {
    use super::HumanBytes;

    #[test]
    fn formats_small_and_large_counts() {
        assert_eq!(HumanBytes(0).to_string(), "0 bytes");
        assert_eq!(HumanBytes(1023).to_string(), "1023 bytes");
        assert_eq!(HumanBytes(1024).to_string(), "1.0 KiB (1024 bytes)");
        assert_eq!(
            HumanBytes(12 << 30).to_string(),
            "12.0 GiB (12884901888 bytes)"
        );
        assert_eq!(
            HumanBytes(u64::MAX).to_string(),
            "16.0 EiB (18446744073709551615 bytes)"
        );
    }
}
