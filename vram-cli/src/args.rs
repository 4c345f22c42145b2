//! Parsers of flag values (sizes, durations, leaf sizes, verification
//! policies, devices): every command's flags are read here, so that one flag
//! means one thing everywhere; usage errors name the flag and what it takes.

use crate::exit::CliError;
use vram_crypto::LeafSize;
use vram_residency::VerifyPolicy;
use vram_validation::parse_byte_size;
use vram_worker::DeviceSpec;

/// A `--device` flag: `auto`, `mock`, `cuda` or `cuda:N`.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming what it takes.
pub fn device_arg(value: &str) -> Result<DeviceSpec, CliError> {
    Ok(DeviceSpec::parse(value)?)
}

/// A size flag such as `256MiB`.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn size_arg(flag: &str, value: &str) -> Result<u64, CliError> {
    parse_byte_size(value).map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

/// A duration flag: a whole number with `ms`, `s`, `m` or `h` (e.g. `15s`),
/// from 100 ms to one day.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn duration_arg(flag: &str, value: &str) -> Result<std::time::Duration, CliError> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .ok()
        .filter(|_| digits.len() <= 9)
        .unwrap_or(0);
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .filter(|ms| (100..=86_400_000).contains(ms));
    ms.map(std::time::Duration::from_millis).ok_or_else(|| {
        CliError::usage(format!(
            "{flag}: expected a duration from 100ms to 24h such as 500ms, 15s, 1m or 1h, got `{}`",
            vram_validation::escape_for_log(value, 40)
        ))
    })
}

/// A `--leaf-size` flag (power of two, 4 KiB to 1 GiB), or `None` when absent.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn leaf_arg(value: Option<&str>) -> Result<Option<LeafSize>, CliError> {
    value
        .map(|v| {
            let bytes = size_arg("--leaf-size", v)?;
            LeafSize::new(bytes).map_err(|e| CliError::usage(format!("--leaf-size: {e}")))
        })
        .transpose()
}

/// `full` or `sampled:K`.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn verify_arg(value: &str) -> Result<VerifyPolicy, CliError> {
    if value == "full" {
        return Ok(VerifyPolicy::Full);
    }
    // K is any u32: the facade caps a sample at the shard's leaf count.
    value
        .strip_prefix("sampled:")
        .filter(|k| !k.is_empty() && k.len() <= 10 && k.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|k| k.parse::<u32>().ok())
        .filter(|k| *k > 0)
        .map(|leaves| VerifyPolicy::Sampled { leaves })
        .ok_or_else(|| {
            CliError::usage(format!(
                "--verify: expected `full` or `sampled:K` with 1 <= K <= 4294967295, got `{}`",
                vram_validation::escape_for_log(value, 40)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::duration_arg;
    use std::time::Duration;

    #[test]
    fn durations_take_a_unit_and_stay_in_bounds() {
        assert_eq!(duration_arg("--x", "15s").unwrap(), Duration::from_secs(15));
        assert_eq!(
            duration_arg("--x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(duration_arg("--x", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            duration_arg("--x", "1h").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in [
            "",
            "15",
            "s",
            "99ms",
            "25h",
            "-1s",
            "1.5s",
            "15 s",
            "99999999999s",
        ] {
            let e = duration_arg("--x", bad).unwrap_err();
            assert_eq!(e.code, crate::exit::USAGE, "{bad}");
            assert!(e.message.starts_with("--x: "), "{}", e.message);
        }
    }
}
