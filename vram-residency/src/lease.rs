//! Verified leases: the only door to a sealed shard's memory.
//!
//! [`VramManager::lease`](crate::VramManager::lease) verifies a shard under a
//! [`LeasePolicy`] and, only if that holds, returns a [`Lease`] that borrows
//! the shard. Through the lease, and only through one, the shard's memory is
//! reachable for computation: [`Lease::memory`] (the bytes on the mock, a
//! device address on CUDA) and [`Lease::tensors`] (the tensors of a
//! safetensors model). So the seed's rule "verify before each execution" is
//! not a convention but the only way in, and the address a kernel needs never
//! appears in `Debug`, serde, errors, audit records or logs.
//!
//! The borrow is the release rule: [`SealedShard::release`] takes the shard by
//! value, so it cannot be released (or dropped) while a lease lives. Many
//! leases of one shard may live at once; none of them can write.
//!
//! ```compile_fail
//! # fn f(manager: &vram_residency::VramManager, shard: vram_residency::SealedShard) {
//! let lease = manager.lease(&shard, Default::default()).unwrap();
//! shard.release().unwrap(); // error: `shard` is borrowed by `lease`
//! let _bytes = lease.host_bytes();
//! # }
//! ```

use crate::shard::SealedShard;
use crate::tensors::{TensorTable, Tensors};
use crate::verify::{AuditMode, Scope, Verifier, VerifyPolicy, VerifyReport};
use crate::VramError;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use vram_audit::AuditEvent;
use vram_core::{HostBytes, MemoryAccess};

/// How often, at most, a shard's granted leases are recorded in the audit
/// log (one `leases_granted` record per shard per interval in which it was
/// leased, and one for the rest when it is released).
pub const LEASE_RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// Leaves a [`LeasePolicy::default`] lease re-reads and hashes.
pub const DEFAULT_LEASE_LEAVES: u32 = 4;

/// What a lease verifies before it is granted.
///
/// Detection: a sampled lease of `k` leaves catches a corruption of a
/// fraction `f` of a shard's leaves with probability `1 - (1 - f)^k`; over `n`
/// requests, `1 - (1 - f)^(k n)`. With `k = 4` and one corrupt leaf among
/// 100 (a 100 MiB model in 1 MiB leaves): 3.9% per request, 98% within 100
/// requests. A full verification catches any corruption; a background
/// [`Scrubber`](crate::Scrubber) bounds the time to detection whatever the
/// request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeasePolicy {
    /// The seal, then `leaves` leaves drawn at random (the default: 4).
    Sampled {
        /// Leaves re-read per lease (at least 1).
        leaves: u32,
    },
    /// The seal and every leaf.
    Full,
    /// The seal, plus: when a full verification (an explicit one, a full
    /// lease, or a complete scrubber sweep, counted from when the sweep
    /// began) is no older than `max_age`, `leaves` random leaves now;
    /// otherwise a full verification now.
    RecentFull {
        /// How old the last full verification may be.
        max_age: Duration,
        /// Leaves re-read now when it is recent enough (at least 1).
        leaves: u32,
    },
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self::Sampled {
            leaves: DEFAULT_LEASE_LEAVES,
        }
    }
}

impl fmt::Display for LeasePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sampled { leaves } => write!(f, "sampled:{leaves}"),
            Self::Full => f.write_str("full"),
            Self::RecentFull { max_age, leaves } => {
                write!(f, "recent:{}:{leaves}", max_age.as_secs())
            }
        }
    }
}

/// A lease policy that does not parse (see [`LeasePolicy::from_str`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease policy must be `full`, `sampled:K` or `recent:SECONDS:K` (K >= 1)")]
pub struct ParseLeasePolicyError;

impl FromStr for LeasePolicy {
    type Err = ParseLeasePolicyError;

    /// `full`, `sampled:K` (K at least 1), or `recent:SECONDS:K` (a full
    /// verification no older than SECONDS, plus K sampled leaves now).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| -> Result<u32, ParseLeasePolicyError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseLeasePolicyError);
            }
            t.parse().map_err(|_| ParseLeasePolicyError)
        };
        match text.split(':').collect::<Vec<_>>().as_slice() {
            ["full"] => Ok(Self::Full),
            ["sampled", k] => match number(k)? {
                0 => Err(ParseLeasePolicyError),
                leaves => Ok(Self::Sampled { leaves }),
            },
            ["recent", secs, k] => match number(k)? {
                0 => Err(ParseLeasePolicyError),
                leaves => Ok(Self::RecentFull {
                    max_age: Duration::from_secs(u64::from(number(secs)?)),
                    leaves,
                }),
            },
            _ => Err(ParseLeasePolicyError),
        }
    }
}

/// Access to a sealed shard's memory, granted after a verification held.
///
/// Borrows the shard: it cannot be released while the lease lives. Every
/// view it gives ([`Lease::memory`], [`Lease::host_bytes`],
/// [`Lease::tensors`]) borrows the lease in turn, so the compiler refuses a
/// view used after its lease is dropped: a request computes on bytes
/// verified for it, and takes a new lease (a new verification) for the
/// next. `Debug` shows the shard and the verification, never an address.
pub struct Lease<'s> {
    shard: &'s SealedShard,
    verification: VerifyReport,
}

impl<'s> Lease<'s> {
    pub(crate) fn new(shard: &'s SealedShard, verification: VerifyReport) -> Self {
        Self {
            shard,
            verification,
        }
    }

    /// The leased shard.
    #[must_use]
    pub fn shard(&self) -> &'s SealedShard {
        self.shard
    }

    /// What was verified before this lease was granted.
    #[must_use]
    pub fn verification(&self) -> &VerifyReport {
        &self.verification
    }

    /// The shard's memory: [`MemoryAccess::Host`] with the bytes on a device
    /// whose memory is host memory (the mock), [`MemoryAccess::Device`] with
    /// the device address on CUDA. On the mock the bytes stay read-locked
    /// (corruption injected for tests waits) while the returned value lives.
    ///
    /// The access borrows the lease: it cannot be used once the lease is
    /// dropped.
    ///
    /// ```compile_fail,E0505
    /// # fn f(manager: &vram_residency::VramManager, shard: &vram_residency::SealedShard) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease(shard, Default::default())?;
    /// let memory = lease.memory()?;
    /// drop(lease); // error: `lease` is borrowed by `memory`
    /// let _view = &memory;
    /// # Ok(()) }
    /// ```
    ///
    /// Used while the lease lives, it compiles:
    ///
    /// ```no_run
    /// # fn f(manager: &vram_residency::VramManager, shard: &vram_residency::SealedShard) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease(shard, Default::default())?;
    /// let memory = lease.memory()?;
    /// let _view = &memory;
    /// drop(memory);
    /// drop(lease);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`VramError::Device`] when the backend offers no access to its memory.
    pub fn memory(&self) -> Result<MemoryAccess<'_>, VramError> {
        self.shard
            .buffer()
            .memory()
            .map_err(|source| VramError::Device {
                device: self.shard.gpu_device(),
                source,
            })
    }

    /// The shard's bytes, on a device whose memory is host memory (the mock).
    ///
    /// The bytes borrow the lease: they cannot be read once it is dropped.
    ///
    /// ```compile_fail,E0505
    /// # fn f(manager: &vram_residency::VramManager, shard: &vram_residency::SealedShard) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease(shard, Default::default())?;
    /// let bytes = lease.host_bytes()?;
    /// drop(lease); // error: `lease` is borrowed by `bytes`
    /// let _first = bytes.first();
    /// # Ok(()) }
    /// ```
    ///
    /// Read while the lease lives, they compile:
    ///
    /// ```no_run
    /// # fn f(manager: &vram_residency::VramManager, shard: &vram_residency::SealedShard) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease(shard, Default::default())?;
    /// let bytes = lease.host_bytes()?;
    /// let _first = bytes.first();
    /// drop(bytes);
    /// drop(lease);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`VramError::Device`] on a device whose memory the host cannot read
    /// directly (CUDA: use [`Lease::memory`]).
    pub fn host_bytes(&self) -> Result<HostBytes<'_>, VramError> {
        match self.memory()? {
            MemoryAccess::Host(bytes) => Ok(bytes),
            _ => Err(VramError::Device {
                device: self.shard.gpu_device(),
                source: vram_core::DeviceError::Unsupported {
                    operation: "host access to device memory (use Lease::memory)",
                },
            }),
        }
    }

    /// The names of the shard's tensors, in file order (see [`Lease::tensors`]).
    ///
    /// # Errors
    /// As [`Lease::tensors`].
    pub fn tensor_names(&self) -> Result<Vec<&'s str>, VramError> {
        Ok(self.shard.tensor_table()?.names().collect())
    }

    /// The tensors of a shard that holds a safetensors file, over one
    /// access to its memory: what a model builds its weights from in one
    /// request ([`Tensors::get`]: dtype, shape, and the bytes on the mock or
    /// the device address on CUDA). The shard's tensor table was read at its
    /// first lease from header leaves checked against the seal. (On the
    /// mock, each access read-locks the shard's bytes; do not take a second
    /// one on a thread that holds one while a test injects corruption, which
    /// waits for the lock.)
    ///
    /// The tensors, and every view of one, borrow the lease: none can be
    /// used once it is dropped.
    ///
    /// ```compile_fail,E0505
    /// # fn f(manager: &vram_residency::VramManager, shard: &vram_residency::SealedShard) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease(shard, Default::default())?;
    /// let tensors = lease.tensors()?;
    /// drop(lease); // error: `lease` is borrowed by `tensors`
    /// let _weight = tensors.get("weight")?.host_bytes();
    /// # Ok(()) }
    /// ```
    ///
    /// Used while the lease lives, they compile:
    ///
    /// ```no_run
    /// # fn f(manager: &vram_residency::VramManager, shard: &vram_residency::SealedShard) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease(shard, Default::default())?;
    /// let tensors = lease.tensors()?;
    /// let _weight = tensors.get("weight")?.host_bytes();
    /// drop(tensors);
    /// drop(lease);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`VramError::NotSafetensors`] when the shard does not hold a usable
    /// safetensors file; as [`Lease::memory`].
    pub fn tensors(&self) -> Result<Tensors<'_>, VramError> {
        let table = self.shard.tensor_table()?;
        Ok(Tensors::new(table, self.memory()?, self.shard.gpu_device()))
    }
}

/// Verifies `shard` as `policy` asks and grants the lease, or refuses it:
/// every refusal is audited at once (critical), grants are counted and
/// recorded per [`LEASE_RECORD_INTERVAL`].
pub(crate) fn grant<'s>(
    verifier: &Verifier<'_>,
    shard: &'s SealedShard,
    policy: LeasePolicy,
) -> Result<Lease<'s>, VramError> {
    let start = Instant::now();
    match verify_for_lease(verifier, shard, policy) {
        Ok(report) => {
            verifier.metrics.lease(true, start.elapsed());
            if let Some(tally) = shard.count_lease(&report, LEASE_RECORD_INTERVAL) {
                verifier.audit.record(shard.leases_event(&tally))?;
            }
            Ok(Lease::new(shard, report))
        }
        Err(e) => {
            verifier.metrics.lease(false, start.elapsed());
            tracing::error!(shard_id = %shard.shard_id(), policy = %policy, error = %e, "lease refused");
            // The refusal is what the caller must see; an audit failure on
            // top of it is logged, not substituted.
            if let Err(audit_err) = verifier.audit.record(AuditEvent::LeaseRefused {
                shard_id: shard.shard_id().to_string(),
                gpu_device: shard.gpu_device(),
                policy: policy.to_string(),
                reason: e.to_string(),
            }) {
                tracing::error!(error = %audit_err, "could not audit a lease refusal");
            }
            Err(e)
        }
    }
}

fn verify_for_lease(
    verifier: &Verifier<'_>,
    shard: &SealedShard,
    policy: LeasePolicy,
) -> Result<VerifyReport, VramError> {
    // A compromised shard is refused without reading it again (its failure
    // was audited when it was found).
    shard.ensure_not_compromised()?;
    let run = match policy {
        LeasePolicy::Sampled { leaves } => VerifyPolicy::Sampled { leaves },
        LeasePolicy::Full => VerifyPolicy::Full,
        LeasePolicy::RecentFull { max_age, leaves } => match shard.since_full_verification() {
            Some(age) if age <= max_age => VerifyPolicy::Sampled { leaves },
            _ => VerifyPolicy::Full,
        },
    };
    // Successes are counted in the lease tally, not audited one by one.
    let report = verifier.verify(shard, Scope::Policy(run), AuditMode::FailuresOnly)?;
    if !shard.has_tensor_table() {
        read_tensor_table(verifier, shard)?;
    }
    Ok(report)
}

/// Reads the shard's tensor table from its header, once; a shard that holds
/// no safetensors or GGUF file keeps the reason instead. Every byte it believes,
/// the 8-byte length prefix included, is first checked against the seal:
/// the leaves that hold the prefix, then (when the header runs past them)
/// the leaves that hold the whole header, each read once and parsed from
/// that same read. A mismatch compromises the shard and refuses the lease
/// (audited as any failed verification), so no reason is ever kept from
/// bytes that were not checked.
fn read_tensor_table(verifier: &Verifier<'_>, shard: &SealedShard) -> Result<(), VramError> {
    let table = TensorTable::read(shard.vram_bytes(), shard.shard_id().as_str(), |n| {
        verifier.read_verified_prefix(shard, n)
    })?;
    shard.set_tensor_table(table);
    Ok(())
}

impl fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("shard_id", &self.shard.shard_id().as_str())
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print() {
        for (text, policy) in [
            ("full", LeasePolicy::Full),
            ("sampled:4", LeasePolicy::Sampled { leaves: 4 }),
            (
                "recent:30:2",
                LeasePolicy::RecentFull {
                    max_age: Duration::from_secs(30),
                    leaves: 2,
                },
            ),
            (
                "recent:0:1",
                LeasePolicy::RecentFull {
                    max_age: Duration::ZERO,
                    leaves: 1,
                },
            ),
        ] {
            assert_eq!(text.parse::<LeasePolicy>().unwrap(), policy);
            assert_eq!(policy.to_string(), text);
        }
        for bad in [
            "",
            "sampled",
            "sampled:0",
            "sampled:-1",
            "sampled:+1",
            "sampled:4:4",
            "Full",
            "recent:30",
            "recent::1",
            "recent:5:0",
            "recent:1:99999999999",
            "full:1",
        ] {
            assert_eq!(
                bad.parse::<LeasePolicy>(),
                Err(ParseLeasePolicyError),
                "{bad}"
            );
        }
        assert_eq!(LeasePolicy::default(), LeasePolicy::Sampled { leaves: 4 });
    }
}
