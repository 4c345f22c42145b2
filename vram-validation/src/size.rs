//! Byte sizes: limits, parsing and display.

use crate::escape::escape_for_log;
use crate::{Field, ValidationError};

/// Default ceiling for one model: 100 GiB.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 100 * 1024 * 1024 * 1024;

/// How many characters of a rejected size string an error shows.
const SHOWN_CHARS: usize = 40;

/// Checks that a model of `bytes` bytes is non-empty and at most `max` bytes.
///
/// # Errors
///
/// [`ValidationError::Zero`] for an empty model, [`ValidationError::TooLarge`]
/// above `max`.
///
/// ```
/// use vram_validation::{validate_model_size, DEFAULT_MAX_MODEL_BYTES};
/// assert_eq!(validate_model_size(4096, DEFAULT_MAX_MODEL_BYTES), Ok(4096));
/// assert!(validate_model_size(0, DEFAULT_MAX_MODEL_BYTES).is_err());
/// ```
pub fn validate_model_size(bytes: u64, max: u64) -> Result<u64, ValidationError> {
    if bytes == 0 {
        return Err(ValidationError::Zero { field: Field::Size });
    }
    if bytes > max {
        return Err(ValidationError::TooLarge { bytes, max });
    }
    Ok(bytes)
}

/// Parses a byte size such as `1048576`, `512 MiB` or `2GB`.
///
/// The grammar is `DIGITS [" "] [UNIT]`: ASCII digits only (no sign, no fraction,
/// no exponent, no separators), at most one space, then a unit. Units are case
/// sensitive:
///
/// | unit | factor |
/// |------|--------|
/// | (none), `B` | 1 |
/// | `K`, `KiB` | 1024 |
/// | `M`, `MiB` | 1024² |
/// | `G`, `GiB` | 1024³ |
/// | `T`, `TiB` | 1024⁴ |
/// | `KB` | 1000 |
/// | `MB` | 1000² |
/// | `GB` | 1000³ |
/// | `TB` | 1000⁴ |
///
/// The single letters are binary, as in most memory-related tools; the `..B`
/// forms are decimal, as in SI. Leading or trailing whitespace is rejected.
///
/// # Errors
///
/// [`ValidationError::BadSize`] for anything outside the grammar or a value that
/// does not fit in a `u64`.
///
/// ```
/// use vram_validation::parse_byte_size;
/// assert_eq!(parse_byte_size("1048576"), Ok(1 << 20));
/// assert_eq!(parse_byte_size("8 GiB"), Ok(8 << 30));
/// assert_eq!(parse_byte_size("2GB"), Ok(2_000_000_000));
/// assert!(parse_byte_size("1.5 GiB").is_err());
/// ```
pub fn parse_byte_size(s: &str) -> Result<u64, ValidationError> {
    let bad = |reason: &'static str| ValidationError::BadSize {
        shown: escape_for_log(s, SHOWN_CHARS),
        reason,
    };
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad(
            "expected a whole number of bytes, optionally followed by a unit such as MiB",
        ));
    }
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    if rest.starts_with(' ') && unit.is_empty() {
        return Err(bad("trailing space"));
    }
    let factor = unit_factor(unit).ok_or_else(|| {
        bad("unknown unit or trailing characters; use B, K/KiB, M/MiB, G/GiB, T/TiB or KB/MB/GB/TB")
    })?;
    let mut value: u64 = 0;
    for d in digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d.wrapping_sub(b'0'))))
            .ok_or_else(|| bad("does not fit in 64 bits"))?;
    }
    value
        .checked_mul(factor)
        .ok_or_else(|| bad("does not fit in 64 bits"))
}

fn unit_factor(unit: &str) -> Option<u64> {
    const KI: u64 = 1 << 10;
    Some(match unit {
        "" | "B" => 1,
        "K" | "KiB" => KI,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    })
}

/// Formats a byte count for people: `512 B`, `1.50 KiB`, `1.00 GiB`.
///
/// Below 1 KiB the exact count is shown; above, two decimals of the largest
/// binary unit (up to EiB) that keeps the number at least 1, rounded half up.
///
/// ```
/// use vram_validation::format_bytes;
/// assert_eq!(format_bytes(512), "512 B");
/// assert_eq!(format_bytes(1 << 30), "1.00 GiB");
/// assert_eq!(format_bytes(1536), "1.50 KiB");
/// ```
#[must_use]
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let n = u128::from(n);
    let mut chosen = ("KiB", 1024u128);
    let mut divisor = 1024u128;
    for unit in UNITS {
        if n < divisor {
            break;
        }
        chosen = (unit, divisor);
        divisor = divisor.saturating_mul(1024);
    }
    let (mut unit, mut div) = chosen;
    let mut hundredths = round_div(n.saturating_mul(100), div);
    // 1023.999 KiB rounds to 1024.00 KiB: show it as 1.00 MiB instead.
    if hundredths >= 102_400 {
        if let Some(next) = UNITS
            .iter()
            .position(|u| *u == unit)
            .and_then(|i| UNITS.get(i.saturating_add(1)))
        {
            unit = next;
            div = div.saturating_mul(1024);
            hundredths = round_div(n.saturating_mul(100), div);
        }
    }
    let whole = hundredths.checked_div(100).unwrap_or(0);
    let frac = hundredths.checked_rem(100).unwrap_or(0);
    format!("{whole}.{frac:02} {unit}")
}

fn round_div(numerator: u128, divisor: u128) -> u128 {
    numerator
        .saturating_add(divisor / 2)
        .checked_div(divisor)
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_suffixed() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("1048576", 1 << 20),
            ("7B", 7),
            ("7 B", 7),
            ("1K", 1024),
            ("1 KiB", 1024),
            ("3M", 3 << 20),
            ("3MiB", 3 << 20),
            ("100 GiB", 100 << 30),
            ("100G", 100 << 30),
            ("2 TiB", 2 << 40),
            ("2T", 2 << 40),
            ("5KB", 5_000),
            ("5 MB", 5_000_000),
            ("5GB", 5_000_000_000),
            ("5 TB", 5_000_000_000_000),
            ("18446744073709551615", u64::MAX),
            ("16777215 TiB", 16_777_215 << 40),
            ("007", 7),
        ];
        for (s, want) in cases {
            assert_eq!(parse_byte_size(s), Ok(*want), "{s:?}");
        }
    }

    #[test]
    fn rejects_garbage() {
        let cases = [
            "",
            " ",
            "-1",
            "+1",
            "1.5",
            "1.5GiB",
            "1e9",
            "0x10",
            "1_000",
            "1,000",
            " 1",
            "1 ",
            "1  GiB",
            "1\tGiB",
            "GiB",
            "1 gib",
            "1kb",
            "1 KiB ",
            "1KiBB",
            "1 Ki",
            "1\nGiB",
            "18446744073709551616",
            "16777216 TiB",
            "99999999999999999999999999",
            "１２",
            "1 GiB\0",
            "NaN",
            "inf",
        ];
        for s in cases {
            let err = parse_byte_size(s);
            assert!(
                matches!(err, Err(ValidationError::BadSize { .. })),
                "{s:?} -> {err:?}"
            );
        }
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        let err = parse_byte_size("18446744073709551616").unwrap_err();
        assert!(err.to_string().contains("64 bits"), "{err}");
        let err = parse_byte_size("17179869184 GiB").unwrap_err();
        assert!(err.to_string().contains("64 bits"), "{err}");
    }

    #[test]
    fn model_size_limits() {
        assert_eq!(validate_model_size(1, 1), Ok(1));
        assert_eq!(validate_model_size(u64::MAX, u64::MAX), Ok(u64::MAX));
        assert_eq!(
            validate_model_size(0, 10),
            Err(ValidationError::Zero { field: Field::Size })
        );
        assert_eq!(
            validate_model_size(11, 10),
            Err(ValidationError::TooLarge { bytes: 11, max: 10 })
        );
        let err =
            validate_model_size(DEFAULT_MAX_MODEL_BYTES + 1, DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "size 100.00 GiB (107374182401 bytes) exceeds the limit of 100.00 GiB (107374182400 bytes)"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(1024 * 1024 - 1), "1.00 MiB");
        assert_eq!(format_bytes(5 * (1 << 20) + (1 << 19)), "5.50 MiB");
        assert_eq!(format_bytes(DEFAULT_MAX_MODEL_BYTES), "100.00 GiB");
        assert_eq!(format_bytes(3 << 40), "3.00 TiB");
        assert_eq!(format_bytes(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn format_then_parse_round_trips_whole_units() {
        for (n, s) in [
            (1u64 << 30, "1 GiB"),
            (7 << 20, "7 MiB"),
            (3 << 10, "3 KiB"),
        ] {
            assert_eq!(parse_byte_size(s), Ok(n));
            assert!(format_bytes(n).starts_with(&s[..1]));
        }
    }
}
