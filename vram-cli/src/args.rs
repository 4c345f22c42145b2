//! Parsers of flag values (sizes, durations, leaf sizes, verification
//! policies, devices): every command's flags are read here, so that one flag
//! means one thing everywhere; usage errors name the flag and what it takes.

//!
//! Each parser is a clap `value_parser` of its flag in `cli.rs` (the
//! functions below, or [`Size`] and [`Duration`] for flags that take a size
//! or a duration), and a plain function for the fuzz target. Its error is a
//! [`CliError`], which `run` reports as a command's own error: the same one
//! line and exit code, and the same `--json` error object.

use crate::exit::{io_error, shown_path, CliError};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use clap::builder::TypedValueParser;
use std::ffi::OsStr;
use std::path::Path;
use vram_crypto::LeafSize;
use vram_residency::VerifyPolicy;
use vram_validation::{escape_for_log, parse_byte_size, ExpectedDigest, ModelRef};
use vram_worker::DeviceSpec;

/// The long name of the flag clap is parsing (`--size`), for messages.
fn flag_name(arg: Option<&clap::Arg>) -> String {
    arg.and_then(clap::Arg::get_long)
        .map_or_else(|| "value".to_owned(), |l| format!("--{l}"))
}

/// A clap value parser for a size flag (`256MiB`, `1GiB`, bytes): [`size_arg`]
/// under the flag's own name.
#[derive(Debug, Clone, Copy)]
pub struct Size;

impl TypedValueParser for Size {
    type Value = u64;
    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<u64, clap::Error> {
        let flag = flag_name(arg);
        let parse = move |v: &str| size_arg(&flag, v);
        parse.parse_ref(cmd, arg, value)
    }
}

/// A clap value parser for a duration flag (`15s`, `500ms`): [`duration_arg`]
/// under the flag's own name.
#[derive(Debug, Clone, Copy)]
pub struct Duration;

impl TypedValueParser for Duration {
    type Value = std::time::Duration;
    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<std::time::Duration, clap::Error> {
        let flag = flag_name(arg);
        let parse = move |v: &str| duration_arg(&flag, v);
        parse.parse_ref(cmd, arg, value)
    }
}

/// `--leaf-size`: a power of two from 4 KiB to 1 GiB.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn leaf_size(value: &str) -> Result<LeafSize, CliError> {
    let bytes = size_arg("--leaf-size", value)?;
    LeafSize::new(bytes).map_err(|e| CliError::usage(format!("--leaf-size: {e}")))
}

/// `--model-ref`: a model reference as seals record it.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and why.
pub fn model_ref(value: &str) -> Result<ModelRef, CliError> {
    ModelRef::new(value).map_err(|e| CliError::usage(format!("--model-ref: {e}")))
}

/// `--since`: see [`time_arg`].
///
/// # Errors
/// As [`time_arg`].
pub fn since(value: &str) -> Result<String, CliError> {
    time_arg("--since", value)
}

/// `--until`: see [`time_arg`].
///
/// # Errors
/// As [`time_arg`].
pub fn until(value: &str) -> Result<String, CliError> {
    time_arg("--until", value)
}

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
            escape_for_log(value, 40)
        ))
    })
}

/// A `--leaf-size` flag (power of two, 4 KiB to 1 GiB), or `None` when absent.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn leaf_arg(value: Option<&str>) -> Result<Option<LeafSize>, CliError> {
    value.map(leaf_size).transpose()
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
                escape_for_log(value, 40)
            ))
        })
}

/// The longest file `--expect-sha256 @PATH` reads (pointer files and
/// descriptors are a few hundred bytes).
const MAX_DIGEST_FILE_BYTES: u64 = 64 * 1024;

/// `--expect-sha256 VALUE` or `--expect-sha256 @PATH`.
///
/// # Errors
/// A usage error for a value that is no digest; for `@PATH`, an error naming
/// the file when it cannot be read.
pub fn expected_arg(value: &str) -> Result<ExpectedDigest, CliError> {
    let Some(path) = value.strip_prefix('@') else {
        return ExpectedDigest::parse(value)
            .map_err(|e| CliError::usage(format!("--expect-sha256: {e}")));
    };
    let path = Path::new(path);
    // A file someone else may write to: no symbolic link, nothing but a
    // regular file (a FIFO refused, not waited on), read with a cap.
    let bytes = vram_hub::read_regular_file(path, MAX_DIGEST_FILE_BYTES).map_err(|e| match e {
        vram_hub::HubError::Io { kind, .. } => {
            let mut err = io_error(path, &kind.into());
            err.message = format!("--expect-sha256 @{}", err.message);
            err
        }
        vram_hub::HubError::FileTooLarge { .. } => CliError::usage(format!(
            "--expect-sha256 @{}: is larger than {MAX_DIGEST_FILE_BYTES} bytes; expected a pointer file, a sha256sum line or an OCI descriptor",
            shown_path(path)
        )),
        e => CliError::usage(format!("--expect-sha256: {e}")),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        CliError::usage(format!(
            "--expect-sha256 @{}: cannot be read as text ({e})",
            shown_path(path)
        ))
    })?;
    ExpectedDigest::parse_file(&text)
        .map_err(|e| CliError::usage(format!("--expect-sha256 @{}: {e}", shown_path(path))))
}

/// A `--since`/`--until` time, in the form records store theirs
/// (`YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`, UTC), so that comparing the text
/// compares the times. Takes RFC 3339 in UTC (`Z`, any fraction up to
/// nanoseconds; a leap second only at 23:59:60, which sorts after every
/// time of 23:59:59 of that day) or a date alone (midnight UTC); dates are
/// checked against the calendar (no month 13, no February 30).
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn time_arg(flag: &str, value: &str) -> Result<String, CliError> {
    let err = || {
        CliError::usage(format!(
            "{flag}: expected an RFC 3339 time in UTC such as 2026-01-31T12:00:00Z (or a date, 2026-01-31), got `{}`",
            escape_for_log(value, 40)
        ))
    };
    let full = match value.split_once(['T', 't']) {
        None => format!("{value}T00:00:00Z"),
        Some((_, time)) => {
            let Some(time) = time.strip_suffix(['Z', 'z']) else {
                return Err(CliError::usage(format!(
                    "{flag}: give the time in UTC, ending in Z"
                )));
            };
            // Records keep nanoseconds: a finer fraction would be cut silently.
            if time.split_once('.').is_some_and(|(_, frac)| frac.len() > 9) {
                return Err(err());
            }
            value.to_owned()
        }
    };
    let at = DateTime::parse_from_rfc3339(&full)
        .map_err(|_| err())?
        .with_timezone(&Utc);
    let leap_second = at.nanosecond() >= 1_000_000_000;
    if leap_second && (at.hour(), at.minute()) != (23, 59) {
        return Err(err());
    }
    Ok(at.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

#[cfg(test)]
mod tests {
    use super::{duration_arg, time_arg};
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

    #[test]
    fn times_take_the_form_records_store() {
        let ok = [
            ("2026-01-31", "2026-01-31T00:00:00.000000000Z"),
            ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000000000Z"),
            ("2026-01-31t12:00:00.5z", "2026-01-31T12:00:00.500000000Z"),
            (
                "2026-01-31T12:00:00.123456789Z",
                "2026-01-31T12:00:00.123456789Z",
            ),
        ];
        for (input, want) in ok {
            assert_eq!(
                time_arg("--since", input).ok().as_deref(),
                Some(want),
                "{input}"
            );
        }
        for bad in [
            "yesterday",
            "2026-1-31",
            "2026-01-31T12:00:00",
            "2026-01-31T12:00:00+01:00",
            "2026-01-31T12:00Z",
            "2026-01-31T12:00:00.Z",
            "2026-01-31T12:00:00.1234567890Z",
        ] {
            assert!(time_arg("--since", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_and_times_off_the_calendar_are_refused() {
        for bad in [
            "2026-13-01",
            "2026-00-10",
            "2026-01-32",
            "2026-02-30",
            "2025-02-29",
            "2100-02-29",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31T12:60:00Z",
            "2026-01-31T12:30:60Z",
            "2026-01-31T23:59:61Z",
            "2026-01-31T12:00:00+00:00",
            "2026-01-31T12:00:00-00:00",
            "2026-01-31 12:00:00Z",
        ] {
            assert!(time_arg("--since", bad).is_err(), "{bad}");
        }
        assert!(time_arg("--since", "2024-02-29").is_ok());
        assert!(time_arg("--since", "2000-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn a_leap_second_sorts_between_the_last_second_and_the_next_day() {
        let leap = time_arg("--until", "2016-12-31T23:59:60Z").unwrap();
        let before = time_arg("--until", "2016-12-31T23:59:59.999999999Z").unwrap();
        let after = time_arg("--until", "2017-01-01").unwrap();
        assert!(before < leap && leap < after, "{before} {leap} {after}");
    }

    #[test]
    fn a_normalised_time_reads_back_as_itself() {
        for input in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.000000001Z",
            "2026-01-31T12:00:00.5Z",
            "9999-12-31T23:59:59.999999999Z",
            "2016-12-31T23:59:60.25Z",
        ] {
            let once = time_arg("--since", input).unwrap();
            assert_eq!(time_arg("--since", &once).unwrap(), once, "{input}");
        }
    }
}
