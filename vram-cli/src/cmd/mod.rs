//! One module per subcommand, dispatched from `run`.

mod audit;
mod bench;
mod check;
mod demo;
mod devices;
mod digest;
pub(crate) mod hub;
mod seal;
mod signed;

use crate::cli::{AuditCommand, Cli, Command};
use crate::devices::Selection;
use crate::exit::CliError;
use std::path::Path;
use std::sync::Arc;
use vram_audit::{
    AuditKey, AuditLog, AuditSigner, AuditSink, FailureMode, FailurePolicy, FileOptions,
};
use vram_crypto::LeafSize;
use vram_residency::{DeviceSource, SealHashing, VerifyPolicy, VramConfig, VramManager};
use vram_secrets::WorkerSecret;
use vram_validation::parse_byte_size;

pub(crate) fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Devices(a) => devices::run(a, cli.quiet),
        Command::Digest(a) => digest::run(a, cli.quiet),
        Command::Seal(a) => seal::run(a, cli.quiet),
        Command::Audit(AuditCommand::Verify(a)) => audit::verify(a),
        Command::Audit(AuditCommand::Show(a)) => audit::show(a, cli.quiet),
        Command::Audit(AuditCommand::Head(a)) => audit::head(a),
        Command::Audit(AuditCommand::PublicKey(a)) => audit::public_key(a),
        Command::Demo(a) => demo::run(a, cli.quiet),
        Command::Bench(a) => bench::run(a, cli.quiet),
        Command::VerifyCache(a) => hub::verify_cache(a, cli.quiet),
    }
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
pub(crate) fn duration_arg(flag: &str, value: &str) -> Result<std::time::Duration, CliError> {
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

/// The audit key for a secret, in the form vram-audit takes, with the
/// checkpoint signing key derived from the same secret.
pub(crate) fn audit_key(secret: &WorkerSecret) -> Result<AuditKey, CliError> {
    Ok(AuditKey::from_secret(&secret.audit_key()).with_signer(audit_signer(secret)?))
}

/// The audit log's checkpoint signing key, derived from the secret.
pub(crate) fn audit_signer(secret: &WorkerSecret) -> Result<AuditSigner, CliError> {
    AuditSigner::from_seed(&secret.audit_signing_seed())
        .map_err(|e| CliError::env(format!("audit signing key: {e}")))
}

/// Opens (or continues) a JSON-lines audit log: fail-closed for every event
/// (no success is reported unless its records are durable), never the file
/// the worker secret came from, one writer at a time (waits up to
/// `LogOptions::DEFAULT_LOCK_WAIT` for another `vram` process to finish).
pub(crate) fn open_audit(path: &Path, secret: &WorkerSecret) -> Result<Arc<AuditLog>, CliError> {
    open_audit_with(path, secret, FileOptions::default())
}

/// [`open_audit`] with the caller's segment size and checkpoint cadence
/// (the failure policy is always fail-closed).
pub(crate) fn open_audit_with(
    path: &Path,
    secret: &WorkerSecret,
    tuning: FileOptions,
) -> Result<Arc<AuditLog>, CliError> {
    let options = FileOptions {
        failure: FailurePolicy::fail_closed(FailureMode::DEFAULT_MAX_WAIT),
        ..tuning
    };
    let protected = secret.protected_paths();
    AuditLog::open_file_protecting(path, audit_key(secret)?, &worker_id(), options, &protected)
        .map(Arc::new)
        // Every open error names the log already.
        .map_err(|e| CliError::env(e.to_string()))
}

/// This worker's id in audit records: the host name when it is usable.
pub(crate) fn worker_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "vram-cli".to_string())
}

/// A manager over the selected devices. Without a leaf size, the manager's
/// default for those devices (64 KiB on CUDA devices, 1 MiB otherwise).
pub(crate) fn manager(
    secret: WorkerSecret,
    selection: &Selection,
    audit: Option<Arc<dyn AuditSink>>,
    leaf: Option<LeafSize>,
    hashing: SealHashing,
) -> Result<VramManager, CliError> {
    // Without a log the records are kept in memory here, not by the
    // manager's default, which would warn a second time about what the
    // command already said (or, for bench, does not need said).
    let audit: Arc<dyn AuditSink> = match audit {
        Some(a) => a,
        None => Arc::new(
            AuditLog::in_memory(audit_key(&secret)?, &worker_id())
                .map_err(|e| CliError::env(format!("audit log: {e}")))?,
        ),
    };
    let builder = VramConfig::builder(secret)
        .device_source(DeviceSource::Explicit(selection.devices.clone()))
        .worker_id(worker_id())
        .seal_hashing(hashing)
        .audit(audit)
        // Selection::announce has said it, once.
        .caller_announces_mock(true);
    let builder = match leaf {
        Some(leaf) => builder.leaf_size(leaf),
        None => builder,
    };
    Ok(VramManager::new(builder.build())?)
}

/// Peak resident set size of this process, in bytes (Linux), for reports.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// GB/s (decimal), for reports.
pub(crate) fn gbps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / secs / 1e9
    } else {
        0.0
    }
}

/// Writes `len` bytes of deterministic pseudo-random data (xorshift64*),
/// without holding them all in memory.
pub(crate) struct SyntheticModel {
    state: u64,
    left: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl SyntheticModel {
    pub(crate) fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed | 1,
            left: len,
            pending: [0; 8],
            pending_len: 0,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
    }
}

impl std::io::Read for SyntheticModel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let out = buf.get_mut(..want).unwrap_or_default();
        let mut rest = out;
        // Bytes left over from the previous call's last word come first.
        while self.pending_len > 0 {
            let Some((first, tail)) = std::mem::take(&mut rest).split_first_mut() else {
                break;
            };
            let idx = 8usize.saturating_sub(self.pending_len);
            *first = self.pending.get(idx).copied().unwrap_or(0);
            self.pending_len = self.pending_len.saturating_sub(1);
            rest = tail;
        }
        let mut words = rest.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_word());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            self.pending = self.next_word();
            let n = tail.len();
            if let Some(src) = self.pending.get(..n) {
                tail.copy_from_slice(src);
            }
            self.pending_len = 8usize.saturating_sub(n);
        }
        self.left = self.left.saturating_sub(want as u64);
        Ok(want)
    }
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
