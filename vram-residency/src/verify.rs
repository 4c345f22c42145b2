//! Verification, all of it: re-read the bytes from device memory (never from
//! a host copy), recompute leaf hashes, compare, check the seal tag in
//! constant time, and record the outcome (metrics, audit, the one-way
//! compromised flag). [`Verifier::verify`] is the one entry point: the
//! manager's `verify_*` calls, shard sets (through them) and the scrubber's
//! steps all go through it, each with its [`Scope`] and [`AuditMode`].
//! Checking a client's handle ([`Verifier::check_handle`]) lives here too.
//!
//! This module does not know the manager: the manager lends it what a
//! verification needs ([`Verifier`]), so the dependency runs one way.

use crate::metrics::Metrics;
use crate::seal::Sealer;
use crate::shard::{seal_device_kind, ModelShardHandle, SealedShard};
use crate::trail::AuditTrail;
use crate::{ErrorClass, Provenance, VramError};
use serde::Serialize;
use std::time::{Duration, Instant};
use vram_audit::AuditEvent;
use vram_core::{DeviceError, DeviceInfo};
use vram_crypto::{
    diff_leaves, verify_leaves, CorruptRange, LeafHashes, Sha256Digest, LEAF_PREFIX,
};

/// How much of a shard a verification reads.
///
/// `Sampled { leaves: k }` reads `k` leaves chosen uniformly at random (with
/// replacement) per call, so its cost does not depend on the model size. If a
/// fraction `f` of the leaves is corrupt, one call detects it with probability
/// `1 - (1 - f)^k`: with `k = 16`, a single corrupt leaf among 1,024 is caught
/// by one call with probability about 1.6 %, and 10 % corrupt leaves with
/// about 81 %; `n` independent calls raise that to `1 - (1 - f)^(k n)`.
/// Sampling suits frequent checks between full verifications and scrubbing; it
/// is no substitute for a full verification before trusting a shard.
///
/// `Sampled { leaves: 0 }` checks nothing and is refused on every call
/// ([`VramError::InvalidPolicy`]). `Sampled { leaves: k }` with `k` at or
/// above the shard's leaf count is capped: it runs as a full verification
/// (every leaf once, not `k` random draws), and the report's
/// [`policy`](VerifyReport::policy) says [`VerifyPolicy::Full`]. So the cost
/// of a call never exceeds that of a full verification, whatever `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerifyPolicy {
    /// Every leaf (the default, and what should run before inference). Hashed
    /// on the device when it can, else read back and hashed on the host.
    Full,
    /// Every leaf, always read back and hashed on the host, even on a device
    /// that hashes on its own: an independent cross-check of on-device hashing.
    FullHostReadback,
    /// `leaves` random leaves per call.
    Sampled {
        /// Leaves per call (at least 1; capped at the shard's leaf count).
        leaves: u32,
    },
    /// A step of the background [`Scrubber`](crate::Scrubber): `leaves`
    /// leaves of the sweep's random permutation plus random samples. Audited
    /// as `scrub:K`, apart from callers' `sampled:K`; refused by
    /// [`VramManager::verify_with`](crate::VramManager::verify_with) (start a scrubber instead).
    Scrub {
        /// Leaves of the sweep order per step.
        leaves: u32,
    },
}

impl VerifyPolicy {
    pub(crate) fn name(self) -> String {
        match self {
            Self::Full => "full".into(),
            Self::FullHostReadback => "full_host_readback".into(),
            Self::Sampled { leaves } => format!("sampled:{leaves}"),
            Self::Scrub { leaves } => format!("scrub:{leaves}"),
        }
    }

    /// Probability that one call with this policy detects corruption of the
    /// given fraction of leaves (1.0 for full verification of any corruption).
    pub fn detection_probability(self, corrupt_fraction: f64) -> f64 {
        let f = corrupt_fraction.clamp(0.0, 1.0);
        match self {
            Self::Full | Self::FullHostReadback => {
                if f > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Sampled { leaves } | Self::Scrub { leaves } => {
                1.0 - (1.0 - f).powi(i32::try_from(leaves).unwrap_or(i32::MAX))
            }
        }
    }
}

/// The policy as audit records and reports name it: `full`,
/// `full_host_readback`, `sampled:K`, `scrub:K`.
impl std::fmt::Display for VerifyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Where leaf hashes were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashPath {
    /// Bytes read back to the host and hashed on the CPU.
    HostReadback,
    /// Leaves hashed by the device itself.
    OnDevice,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The shard verified.
    pub shard_id: String,
    /// Policy that ran: the one asked for, except that a sample of at least
    /// the shard's leaf count runs (and is reported) as [`VerifyPolicy::Full`].
    pub policy: VerifyPolicy,
    /// Leaves checked.
    pub leaves_checked: u64,
    /// Bytes re-read and hashed.
    pub bytes_checked: u64,
    /// Where hashing ran.
    pub hash_path: HashPath,
    /// Wall time of the verification.
    #[serde(with = "duration_secs")]
    pub elapsed: Duration,
}

mod duration_secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// The policy that runs for a shard of `leaf_count` leaves: a sample of at
/// least every leaf is a full verification (cheaper than drawing that many
/// leaves at random, and bounded whatever the sample size asked for).
pub(crate) fn effective_policy(policy: VerifyPolicy, leaf_count: u64) -> VerifyPolicy {
    match policy {
        VerifyPolicy::Sampled { leaves } if leaves > 0 && u64::from(leaves) >= leaf_count => {
            VerifyPolicy::Full
        }
        other => other,
    }
}

fn dev(shard: &SealedShard) -> impl Fn(DeviceError) -> VramError + '_ {
    move |source| VramError::Device {
        device: shard.gpu_device(),
        source,
    }
}

/// Which outcomes of a verification reach the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditMode {
    /// Successes and failures (callers' verifications).
    Every,
    /// Failures only: scrub steps are frequent, and a success of each would
    /// flood the log.
    FailuresOnly,
}

/// What one verification checks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'i> {
    /// A caller's policy: the seal, then the leaves the policy names.
    Policy(VerifyPolicy),
    /// One step of the background scrubber: these leaves (its sweep order
    /// and samples), after the seal when `check_seal` is set (the first step
    /// of a shard's sweep). Reported as [`VerifyPolicy::Scrub`].
    ScrubStep {
        /// Leaves of the sweep order per step (names the policy `scrub:K`).
        leaves_per_step: u32,
        /// The leaves to re-read and hash.
        indices: &'i [u64],
        /// Whether to check the seal first.
        check_seal: bool,
    },
}

/// What a verification needs from the manager, lent for one call.
pub(crate) struct Verifier<'a> {
    /// Checks tags under the seal key.
    pub(crate) sealer: &'a Sealer,
    /// Where outcomes are recorded.
    pub(crate) audit: &'a AuditTrail,
    /// The counters outcomes update.
    pub(crate) metrics: &'a Metrics,
    /// Host staging buffer size for read-back.
    pub(crate) staging_bytes: usize,
}

impl Verifier<'_> {
    /// The one verification entry point: refuses a compromised shard, checks
    /// what `scope` asks, and records the outcome (metrics; the audit log as
    /// `audit` says; the compromised flag on an integrity failure).
    ///
    /// Every failure except invalid arguments emits a critical audit event,
    /// whatever `audit` says: `seal_verification_failed` when the bytes or the
    /// seal are wrong (or the shard was already compromised),
    /// `verification_incomplete` when they could not be checked.
    pub(crate) fn verify(
        &self,
        shard: &SealedShard,
        scope: Scope<'_>,
        audit: AuditMode,
    ) -> Result<VerifyReport, VramError> {
        let start = Instant::now();
        let (policy, result) = match scope {
            Scope::Policy(policy) => {
                let policy = effective_policy(policy, shard.leaf_hashes().len() as u64);
                (policy, self.check_policy(shard, policy))
            }
            Scope::ScrubStep {
                leaves_per_step,
                indices,
                check_seal,
            } => {
                let result = shard.ensure_not_compromised().and_then(|()| {
                    if check_seal {
                        self.check_seal(shard)?;
                    }
                    let bytes = if indices.is_empty() {
                        0
                    } else {
                        self.verify_leaf_indices(shard, indices)?
                    };
                    Ok((indices.len() as u64, bytes, HashPath::HostReadback))
                });
                let policy = VerifyPolicy::Scrub {
                    leaves: leaves_per_step,
                };
                (policy, result)
            }
        };
        self.finish(shard, policy, result, start.elapsed(), audit)
    }

    /// A caller's policy: the shard not compromised, its seal, its leaves.
    fn check_policy(
        &self,
        shard: &SealedShard,
        policy: VerifyPolicy,
    ) -> Result<(u64, u64, HashPath), VramError> {
        shard.ensure_not_compromised()?;
        match policy {
            VerifyPolicy::Full => {
                self.check_seal(shard)?;
                self.verify_full(shard, true)
            }
            VerifyPolicy::FullHostReadback => {
                self.check_seal(shard)?;
                self.verify_full(shard, false)
            }
            VerifyPolicy::Sampled { leaves: 0 } => Err(VramError::InvalidPolicy {
                policy: policy.name(),
                reason: "a sample of 0 leaves checks nothing; ask for at least 1",
            }),
            VerifyPolicy::Scrub { .. } => Err(VramError::InvalidPolicy {
                policy: policy.name(),
                reason: "scrub steps are run by a Scrubber; ask for full or sampled:K",
            }),
            VerifyPolicy::Sampled { leaves } => {
                // The tag, and each drawn leaf's recorded hash proved against
                // the shard's index (verify_leaf_indices): a cost that does
                // not grow with the model, where the whole leaf list against
                // the root would (full verifications and scrub sweeps check
                // that).
                self.check_tag(shard)?;
                let indices =
                    crate::sampling::random_leaf_indices(shard.leaf_hashes().len() as u64, leaves)?;
                self.verify_leaf_indices(shard, &indices)
                    .map(|bytes| (indices.len() as u64, bytes, HashPath::HostReadback))
            }
        }
    }

    /// Checks the tag over the shard's fields and that the recorded leaf
    /// hashes still produce the sealed root (`O(n)` in the leaves: for
    /// checks that read every leaf, or once per scrub sweep).
    fn check_seal(&self, shard: &SealedShard) -> Result<(), VramError> {
        self.check_tag(shard)?;
        let tree = shard.tree_digest();
        let recomputed = shard.leaf_hashes().root();
        if recomputed.descriptor != tree.descriptor || !recomputed.root.ct_eq(&tree.root) {
            return Err(VramError::SealInvalid {
                shard_id: shard.shard_id().to_string(),
            });
        }
        Ok(())
    }

    /// Checks that the recorded hash of each of `indices` is the one the
    /// shard was born with: its path in the shard's index ([`vram_crypto::LeafIndex`],
    /// built from the leaf list when it matched the sealed root) ends at
    /// the index's top. `O(k log n)`; what a check of `k` leaves runs
    /// instead of the root over all `n`.
    fn check_recorded(&self, shard: &SealedShard, indices: &[u64]) -> Result<(), VramError> {
        if indices
            .iter()
            .all(|&i| shard.index.proves(shard.leaf_hashes(), i))
        {
            Ok(())
        } else {
            Err(VramError::SealInvalid {
                shard_id: shard.shard_id().to_string(),
            })
        }
    }

    /// Checks the key the shard was sealed under and the tag over its fields.
    fn check_tag(&self, shard: &SealedShard) -> Result<(), VramError> {
        let invalid = || VramError::SealInvalid {
            shard_id: shard.shard_id().to_string(),
        };
        let key_id = self.sealer.key_id();
        if shard.key_id() != key_id {
            // A caller's mix-up, not evidence about the bytes: the shard is not
            // marked compromised for it.
            return Err(VramError::KeyMismatch {
                shard_id: shard.shard_id().to_string(),
                sealed_with: shard.key_id().to_string(),
                manager_key: key_id.to_string(),
            });
        }
        if !self
            .sealer
            .is_authentic(&shard.content.message(), shard.seal_tag())
        {
            return Err(invalid());
        }
        Ok(())
    }

    /// Records a verification's outcome and turns it into the caller's result.
    fn finish(
        &self,
        shard: &SealedShard,
        policy: VerifyPolicy,
        result: Result<(u64, u64, HashPath), VramError>,
        elapsed: Duration,
        audit: AuditMode,
    ) -> Result<VerifyReport, VramError> {
        match result {
            Ok((leaves_checked, bytes_checked, hash_path)) => {
                self.metrics.verified(true, bytes_checked, elapsed);
                if matches!(policy, VerifyPolicy::Full | VerifyPolicy::FullHostReadback) {
                    // Every leaf held no earlier than when this call began.
                    let began = Instant::now()
                        .checked_sub(elapsed)
                        .unwrap_or_else(Instant::now);
                    shard.note_full_verification(began);
                }
                if audit == AuditMode::Every {
                    self.audit.record(AuditEvent::SealVerified {
                        shard_id: shard.shard_id().to_string(),
                        gpu_device: shard.gpu_device(),
                        policy: policy.name(),
                        leaves_checked,
                        bytes_checked,
                    })?;
                }
                tracing::debug!(shard_id = %shard.shard_id(), policy = %policy.name(), "verified");
                Ok(VerifyReport {
                    shard_id: shard.shard_id().to_string(),
                    policy,
                    leaves_checked,
                    bytes_checked,
                    hash_path,
                    elapsed,
                })
            }
            Err(e) => {
                let integrity = matches!(
                    e,
                    VramError::IntegrityViolation { .. }
                        | VramError::SealInvalid { .. }
                        | VramError::Compromised { .. }
                );
                if integrity {
                    // Fatal for the shard: it never verifies again.
                    shard.mark_compromised();
                    self.metrics.verified(false, 0, elapsed);
                    tracing::error!(shard_id = %shard.shard_id(), error = %e, "VERIFICATION FAILED");
                    let ranges = e
                        .corrupt_ranges()
                        .iter()
                        .map(|r| vram_audit::ByteRange {
                            start: r.start,
                            end: r.end,
                        })
                        .collect();
                    // The integrity error is what the caller must see; an audit
                    // failure on top of it is logged, not substituted.
                    if let Err(audit_err) = self.audit.record(AuditEvent::SealVerificationFailed {
                        shard_id: shard.shard_id().to_string(),
                        gpu_device: shard.gpu_device(),
                        policy: policy.name(),
                        reason: e.to_string(),
                        corrupt_ranges: ranges,
                    }) {
                        tracing::error!(error = %audit_err, "could not audit a verification failure");
                    }
                } else if e.class() != ErrorClass::InvalidInput {
                    // The bytes could not be checked (a device read failed...):
                    // nothing was proven, and the record says so.
                    self.metrics.verification_incomplete();
                    tracing::error!(shard_id = %shard.shard_id(), error = %e, "verification could not complete");
                    if let Err(audit_err) = self.audit.record(AuditEvent::VerificationIncomplete {
                        shard_id: shard.shard_id().to_string(),
                        gpu_device: shard.gpu_device(),
                        policy: policy.name(),
                        reason: e.to_string(),
                    }) {
                        tracing::error!(error = %audit_err, "could not audit an incomplete verification");
                    }
                }
                Err(e)
            }
        }
    }

    /// Full verification: on-device leaf hashing when the device reported it
    /// can (and `on_device` allows it), else read back and hashed on the host.
    fn verify_full(
        &self,
        shard: &SealedShard,
        on_device: bool,
    ) -> Result<(u64, u64, HashPath), VramError> {
        let count = shard.leaf_hashes().len() as u64;
        let leaf = shard.tree_digest().descriptor.leaf_size;
        let device_hashes = if on_device && shard.hashes_on_device() {
            shard
                .buffer()
                .hash_leaves_on_device(LEAF_PREFIX, leaf.bytes(), 0, count)
        } else {
            Err(DeviceError::Unsupported {
                operation: "on-device hashing (host read-back requested)",
            })
        };
        match device_hashes {
            Ok(raw) => {
                let hashes: Vec<Sha256Digest> = raw.into_iter().map(Sha256Digest).collect();
                let actual = LeafHashes::from_parts(shard.tree_digest().descriptor, hashes)?;
                report_diff(shard, &actual)?;
                return Ok((count, shard.vram_bytes(), HashPath::OnDevice));
            }
            Err(DeviceError::Unsupported { .. }) => {}
            Err(e) => return Err(dev(shard)(e)),
        }
        let actual = read_back_leaves(shard, self.staging_bytes)?;
        report_diff(shard, &actual)?;
        Ok((count, shard.vram_bytes(), HashPath::HostReadback))
    }

    /// Re-reads and hashes the given leaves; returns the bytes hashed.
    ///
    /// Leaves that fit the staging size are read into one host buffer, up
    /// to the staging size at a time, and hashed together across the SIMD
    /// lanes (a sample of 4 leaves costs about one leaf's hashing time
    /// instead of four); a leaf larger than the staging size is streamed
    /// through it on its own.
    fn verify_leaf_indices(&self, shard: &SealedShard, indices: &[u64]) -> Result<u64, VramError> {
        // The recorded hashes these leaves are compared with, first: no
        // device byte is trusted against a hash altered on the host.
        self.check_recorded(shard, indices)?;
        let descriptor = shard.tree_digest().descriptor;
        let leaf = descriptor.leaf_size;
        let staging = self.staging_bytes.max(1);
        let mut recomputed = Vec::with_capacity(indices.len());
        // The leaves read back, gathered up to `staging` bytes and hashed
        // together: `batch.0[..used]` (what lies past `used` is an earlier
        // batch's bytes, overwritten before it is hashed).
        let mut batch = KeptBatch::take();
        let mut used = 0usize;
        let mut stream_buf = Vec::new();
        let mut bytes = 0u64;
        let read = |offset, buf: &mut [u8]| shard.buffer().read_at(offset, buf).map_err(dev(shard));
        for &i in indices {
            let range = descriptor.leaf_range(i).ok_or(VramError::Crypto(
                vram_crypto::CryptoError::LeafIndexOutOfRange {
                    index: i,
                    count: descriptor.leaf_count(),
                },
            ))?;
            let len = range.end.saturating_sub(range.start);
            bytes = bytes.saturating_add(len);
            let Some(n) = usize::try_from(len).ok().filter(|n| *n <= staging) else {
                batch.flush(leaf, &mut used, &mut recomputed);
                recomputed.push(vram_crypto::leaf_hash_from(
                    range,
                    staging,
                    &mut stream_buf,
                    read,
                )?);
                continue;
            };
            if used.saturating_add(n) > staging {
                batch.flush(leaf, &mut used, &mut recomputed);
            }
            let end = used.saturating_add(n);
            if batch.0.len() < end {
                batch.0.resize(end, 0);
            }
            read(range.start, batch.0.get_mut(used..end).unwrap_or_default())?;
            used = end;
            if len < leaf.bytes() {
                // The shard's short last leaf: only the end of a batch may be
                // shorter than a leaf.
                batch.flush(leaf, &mut used, &mut recomputed);
            }
        }
        batch.flush(leaf, &mut used, &mut recomputed);
        let corrupt = verify_leaves(shard.leaf_hashes(), indices, &recomputed)?;
        if corrupt.is_empty() {
            Ok(bytes)
        } else {
            Err(integrity(shard, corrupt))
        }
    }

    /// Reads the first `len` bytes of a shard, rounded up to whole leaves,
    /// once; checks those leaves against the seal's leaf hashes; returns the
    /// bytes read. What a caller parses is exactly what was checked (no
    /// second read a tamperer could race). Recorded as a verification of
    /// policy `sampled:K` (K the leaves read): a mismatch compromises the
    /// shard and is audited, as by [`Verifier::verify`].
    pub(crate) fn read_verified_prefix(
        &self,
        shard: &SealedShard,
        len: u64,
    ) -> Result<Vec<u8>, VramError> {
        let start = Instant::now();
        let descriptor = shard.tree_digest().descriptor;
        let count = len
            .max(1)
            .div_ceil(descriptor.leaf_size.bytes())
            .min(descriptor.leaf_count());
        let end = descriptor
            .leaf_range(count.saturating_sub(1))
            .map_or(0, |r| r.end);
        let read = || -> Result<Vec<u8>, VramError> {
            shard.ensure_not_compromised()?;
            self.check_tag(shard)?;
            let indices: Vec<u64> = (0..count).collect();
            self.check_recorded(shard, &indices)?;
            let n = usize::try_from(end).map_err(|_| VramError::Internal {
                reason: "a shard prefix larger than the address space",
            })?;
            let mut bytes = vec![0u8; n];
            shard.buffer().read_at(0, &mut bytes).map_err(dev(shard))?;
            let mut hashes = Vec::new();
            vram_crypto::hash_leaf_run(descriptor.leaf_size, &bytes, &mut hashes);
            let corrupt = verify_leaves(shard.leaf_hashes(), &indices, &hashes)?;
            if corrupt.is_empty() {
                Ok(bytes)
            } else {
                Err(integrity(shard, corrupt))
            }
        };
        let (bytes, outcome) = match read() {
            Ok(bytes) => (Some(bytes), Ok((count, end, HashPath::HostReadback))),
            Err(e) => (None, Err(e)),
        };
        let policy = VerifyPolicy::Sampled {
            leaves: u32::try_from(count).unwrap_or(u32::MAX),
        };
        self.finish(
            shard,
            policy,
            outcome,
            start.elapsed(),
            AuditMode::FailuresOnly,
        )?;
        bytes.ok_or(VramError::Internal {
            reason: "a verified prefix without its bytes",
        })
    }

    /// Checks that a handle is authentic under this seal key and was sealed
    /// for this worker; returns its seal format version. `device` is this
    /// manager's device of the handle's index (an index it lacks is
    /// refused): an authentic v2 or v3 handle naming another kind of
    /// device, another UUID or another worker id is refused. A v1 handle
    /// binds none of these and passes only when `accept_v1` is set.
    pub(crate) fn check_handle(
        &self,
        h: &ModelShardHandle,
        device: Result<&DeviceInfo, VramError>,
        accept_v1: bool,
    ) -> Result<u8, VramError> {
        let shown = || vram_validation::escape_for_log(&h.shard_id, 64);
        let invalid = || VramError::SealInvalid { shard_id: shown() };
        let key_id = self.sealer.key_id();
        if h.key_id != key_id.to_string() {
            return Err(invalid());
        }
        let read = h.read_back().ok_or_else(invalid)?;
        let msg = read.message(key_id);
        if !self.sealer.is_authentic(&msg, &read.tag) {
            return Err(invalid());
        }
        // Authentic: now what it was sealed for. A handle naming a device
        // index this worker lacks is not one of its handles.
        let info = device?;
        match read.binding {
            // An authentic v2 handle that names another device than ours of
            // that index (a mock seal shown to a CUDA worker, another GPU),
            // or another worker, is refused.
            Some(b) => {
                if seal_device_kind(info.kind) != b.device_kind || info.uuid != b.device_uuid {
                    return Err(VramError::WrongDevice {
                        shard_id: shown(),
                        device: h.gpu_device,
                    });
                }
                if b.worker_id != self.sealer.worker_id() {
                    return Err(VramError::WrongWorker { shard_id: shown() });
                }
            }
            None if accept_v1 => {}
            None => return Err(VramError::UnboundHandle { shard_id: shown() }),
        }
        Ok(msg.version())
    }

    /// Checks the handles of one tensor-parallel set (see
    /// [`VramManager::check_handle_set`](crate::VramManager::check_handle_set));
    /// `device` finds this manager's device of an index.
    pub(crate) fn check_handle_set<'d>(
        &self,
        handles: &[ModelShardHandle],
        device: impl Fn(u32) -> Result<&'d DeviceInfo, VramError>,
    ) -> Result<u8, VramError> {
        let first = handles.first().ok_or_else(|| VramError::InvalidShardSet {
            reason: "no handles".into(),
        })?;
        let mut version = None;
        let n = handles.len();
        for (i, h) in handles.iter().enumerate() {
            let v = self.check_handle(h, device(h.gpu_device), false)?;
            let consistent = usize::from(h.shard_index) == i
                && usize::from(h.shard_total) == n
                && h.model_ref == first.model_ref
                && h.set_id == first.set_id
                && Provenance::same_statement(h.provenance.as_ref(), first.provenance.as_ref())
                && version.is_none_or(|first_v| first_v == v);
            if !consistent {
                return Err(VramError::InvalidShardSet {
                    reason: format!(
                        "handle {i} is not position {i} of {n} of the same sealing (model, set id, seal version and signed statement must match)"
                    ),
                });
            }
            version = Some(v);
        }
        Ok(version.unwrap_or(vram_crypto::SEAL_FORMAT_V1))
    }

    /// Checks a client's handle and that it describes `shard`, then verifies
    /// `shard` with `policy`.
    pub(crate) fn verify_handle(
        &self,
        handle: &ModelShardHandle,
        device: Result<&DeviceInfo, VramError>,
        shard: &SealedShard,
        policy: VerifyPolicy,
    ) -> Result<VerifyReport, VramError> {
        self.check_handle(handle, device, false)?;
        if handle != &shard.handle() {
            return Err(VramError::SealInvalid {
                shard_id: shard.shard_id().to_string(),
            });
        }
        self.verify(shard, Scope::Policy(policy), AuditMode::Every)
    }
}

/// Largest read-back batch a thread keeps for its next sampled check.
const KEPT_BATCH_BYTES: usize = 1 << 20;

thread_local! {
    /// The calling thread's read-back batch, kept between sampled checks.
    static KEPT_BATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The read-back batch of one sampled check or scrub step: the calling
/// thread's kept buffer, given back to it on drop when it is at most
/// [`KEPT_BATCH_BYTES`] (one 1 MiB leaf, or 16 of 64 KiB). A check made
/// once per request then neither allocates nor zeroes its batch each time
/// (about a third of the read-back's cost for one 64 KiB leaf when the
/// request before left the caches cold); a thread keeps at most 1 MiB of
/// model bytes, freed with the thread.
struct KeptBatch(Vec<u8>);

impl KeptBatch {
    fn take() -> Self {
        Self(KEPT_BATCH.with(std::cell::Cell::take))
    }

    /// Hashes the whole leaves gathered in `self.0[..*used]` (the last may
    /// be short), appends their hashes in order and empties the batch.
    fn flush(&self, leaf: vram_crypto::LeafSize, used: &mut usize, out: &mut Vec<Sha256Digest>) {
        if let Some(gathered) = self.0.get(..*used).filter(|g| !g.is_empty()) {
            vram_crypto::hash_leaf_run(leaf, gathered, out);
        }
        *used = 0;
    }
}

impl Drop for KeptBatch {
    fn drop(&mut self) {
        if self.0.capacity() <= KEPT_BATCH_BYTES {
            let kept = std::mem::take(&mut self.0);
            // A thread being torn down has no slot left: the buffer is freed.
            let _ = KEPT_BATCH.try_with(|slot| slot.set(kept));
        }
    }
}

/// The integrity error for `corrupt` leaves: each range once, in file order
/// (a sample draws with replacement, so one corrupt leaf may be found by
/// several draws).
fn integrity(shard: &SealedShard, mut corrupt: Vec<CorruptRange>) -> VramError {
    corrupt.sort_by_key(|r| (r.leaf_index, r.start, r.end));
    corrupt.dedup();
    VramError::IntegrityViolation {
        shard_id: shard.shard_id().to_string(),
        device: shard.gpu_device(),
        tensors: shard.corrupt_tensors(&corrupt),
        corrupt,
    }
}

fn report_diff(shard: &SealedShard, actual: &LeafHashes) -> Result<(), VramError> {
    let corrupt = diff_leaves(shard.leaf_hashes(), actual)?;
    if corrupt.is_empty() {
        Ok(())
    } else {
        Err(integrity(shard, corrupt))
    }
}

/// Re-reads every leaf from the device and hashes it: one contiguous leaf
/// range per core, each read back in staging-sized pieces
/// ([`vram_crypto::leaf_hashes_from`]). Host memory: one staging chunk per core.
fn read_back_leaves(shard: &SealedShard, staging: usize) -> Result<LeafHashes, VramError> {
    vram_crypto::leaf_hashes_from(
        shard.tree_digest().descriptor.leaf_size,
        shard.vram_bytes(),
        staging,
        |offset, buf: &mut [u8]| shard.buffer().read_at(offset, buf).map_err(dev(shard)),
    )
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use crate::{SealRequest, SealSource, VerifyPolicy, VramConfig, VramError, VramManager};
    use std::sync::Arc;
    use vram_core::Device;
    use vram_crypto::{LeafHashes, LeafSize, Sha256Digest};
    use vram_secrets::WorkerSecret;

    fn manager() -> VramManager {
        let device: Arc<dyn Device> = vram_mock::MockDevice::new(0, 64 << 20);
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![9u8; 32])).unwrap();
        let config = VramConfig::builder(secret)
            .device(device)
            .leaf_size(LeafSize::new(4096).unwrap())
            .build();
        VramManager::new(config).unwrap()
    }

    /// Host-side seal state altered in memory (leaf list, root, key id, any
    /// sealed field) is caught before any device byte is trusted.
    #[test]
    fn altered_host_side_seal_state_is_refused() {
        let m = manager();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let seal = || {
            m.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
                .unwrap()
        };
        let invalid = |s: &crate::SealedShard| {
            matches!(m.verify_sealed(s), Err(VramError::SealInvalid { .. }))
        };

        let mut s = seal();
        let (d, mut hashes) = s.leaves.clone().into_parts();
        hashes[1] = Sha256Digest([0xAB; 32]);
        s.leaves = LeafHashes::from_parts(d, hashes).unwrap();
        assert!(invalid(&s), "altered leaf list");

        let mut s = seal();
        s.content.tree.root = Sha256Digest([1; 32]);
        assert!(invalid(&s), "altered root");

        let mut s = seal();
        s.content.len -= 1;
        assert!(invalid(&s), "altered length");

        let mut s = seal();
        s.content.sealed_at_ns += 1;
        assert!(invalid(&s), "altered seal time");

        let mut s = seal();
        s.content.key_id = vram_secrets::KeyId::from_bytes([0; 8]);
        assert!(
            matches!(m.verify_sealed(&s), Err(VramError::KeyMismatch { .. })),
            "altered key id"
        );
        assert!(
            !s.is_compromised(),
            "a key mix-up says nothing about the bytes"
        );

        let mut s = seal();
        s.tag.0[31] ^= 1;
        assert!(invalid(&s), "altered tag");

        // The provenance is bound too: added to a v2 shard, or edited on a
        // v3 one (the scrubber's seal check is this same check_seal).
        let provenance = crate::Provenance::new([1; 32], [2; 32], "org/model", ".").unwrap();
        let mut s = seal();
        s.content.provenance = Some(provenance.clone());
        assert!(invalid(&s), "provenance added");
        let mut request = SealRequest::new(
            vram_validation::ModelRef::new("hf://org/model@main").unwrap(),
            0,
        );
        request.provenance = Some(provenance);
        let signed = || m.seal(&request, SealSource::Bytes(&data)).unwrap();
        m.verify_sealed(&signed()).unwrap();
        let mut s = signed();
        if let Some(p) = s.content.provenance.as_mut() {
            p.statement_sha256[5] ^= 4;
        }
        assert!(invalid(&s), "statement digest edited");
        let mut s = signed();
        if let Some(p) = s.content.provenance.as_mut() {
            p.resource_name = vram_validation::ProvenanceName::new("other").unwrap();
        }
        assert!(invalid(&s), "resource name edited");
        let mut s = signed();
        s.content.provenance = None;
        assert!(invalid(&s), "provenance dropped");

        // And an untouched shard verifies.
        m.verify_sealed(&seal()).unwrap();
    }

    /// The read-back batch a thread keeps between checks (`KeptBatch`)
    /// holds the bytes an earlier check read: a leaf read again after it
    /// changed is hashed from the new read, never from those bytes, at the
    /// start of the batch and after it, and a batch larger than the kept
    /// bound is not kept.
    #[test]
    fn a_kept_read_back_batch_never_stands_in_for_a_read() {
        use super::{Scope, KEPT_BATCH, KEPT_BATCH_BYTES};
        let device = vram_mock::MockDevice::new(0, 64 << 20);
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![9u8; 32])).unwrap();
        let config = VramConfig::builder(secret)
            .device(Arc::clone(&device) as Arc<dyn Device>)
            .leaf_size(LeafSize::new(4096).unwrap())
            .build();
        let m = VramManager::new(config).unwrap();
        // 6 leaves of 4 KiB.
        let data: Vec<u8> = (0..24_576u32).map(|i| (i % 251) as u8).collect();
        // Leaf 3 read again at 0..4096, then after leaf 0 at 4096..8192.
        for indices in [&[3u64][..], &[0, 3]] {
            let shard = m
                .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
                .unwrap();
            let buffer = *device.live_buffers().last().unwrap();
            let step = |indices: &[u64]| {
                m.verifier().verify(
                    &shard,
                    Scope::ScrubStep {
                        leaves_per_step: 1,
                        indices,
                        check_seal: false,
                    },
                    super::AuditMode::FailuresOnly,
                )
            };
            // Leaves 2 and 3, good: the kept batch now holds their bytes,
            // leaf 3's at 4096..8192.
            step(&[2, 3]).unwrap();
            device.flip_bits(buffer, 3 * 4096 + 7, 1).unwrap();
            match step(indices).unwrap_err() {
                VramError::IntegrityViolation { corrupt, .. } => {
                    assert!(!corrupt.is_empty());
                    assert!(corrupt.iter().all(|r| r.leaf_index == 3), "{corrupt:?}");
                }
                other => panic!("{indices:?}: {other}"),
            }
        }
        let kept = KEPT_BATCH.with(std::cell::Cell::take);
        assert!(kept.len() >= 2 * 4096, "the batch was kept");
        assert!(kept.capacity() <= KEPT_BATCH_BYTES);
        KEPT_BATCH.with(|slot| slot.set(kept));
    }

    /// A sampled check proves each drawn leaf's recorded hash against the
    /// shard's index instead of hashing the whole list: an altered entry is
    /// refused as `SealInvalid` when its leaf is drawn (before the device
    /// bytes are compared with it), and every tag check still runs.
    #[test]
    fn a_sampled_check_refuses_an_altered_recorded_hash_when_it_draws_its_leaf() {
        let m = manager();
        // 5 leaves of 4 KiB.
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let seal = || {
            m.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
                .unwrap()
        };
        let sampled = VerifyPolicy::Sampled { leaves: 1 };
        let untouched = seal();
        for _ in 0..50 {
            m.verify_with(&untouched, sampled).unwrap();
        }

        let mut s = seal();
        let (d, mut hashes) = s.leaves.clone().into_parts();
        hashes[1] = Sha256Digest([0xAB; 32]);
        s.leaves = LeafHashes::from_parts(d, hashes).unwrap();
        // Leaf 1 is drawn with probability 1/5 per check: within 200 checks
        // all but surely (a miss has probability 0.8^200).
        let mut passed = 0;
        let refused = (0..200).find_map(|_| match m.verify_with(&s, sampled) {
            Ok(_) => {
                passed += 1;
                None
            }
            Err(e) => Some(e),
        });
        assert!(
            matches!(refused, Some(VramError::SealInvalid { .. })),
            "{refused:?} after {passed} passing checks"
        );
        assert!(s.is_compromised());
        // A full verification refuses the same list at once.
        let mut s = seal();
        s.leaves = LeafHashes::from_parts(d, {
            let (_, mut h) = s.leaves.clone().into_parts();
            h[3].0[0] ^= 1;
            h
        })
        .unwrap();
        assert!(matches!(
            m.verify_with(&s, VerifyPolicy::Full),
            Err(VramError::SealInvalid { .. })
        ));

        // An index that is not the list's (built over other hashes): every
        // sampled check.
        let mut s = seal();
        let (d, mut other) = s.leaves.clone().into_parts();
        for h in &mut other {
            h.0[0] ^= 1;
        }
        s.index = vram_crypto::LeafIndex::over(&LeafHashes::from_parts(d, other).unwrap());
        assert!(matches!(
            m.verify_with(&s, sampled),
            Err(VramError::SealInvalid { .. })
        ));

        // The tag is still checked by a sampled check.
        let mut s = seal();
        s.tag.0[0] ^= 1;
        assert!(matches!(
            m.verify_with(&s, sampled),
            Err(VramError::SealInvalid { .. })
        ));
        let mut s = seal();
        s.content.sealed_at_ns += 1;
        assert!(matches!(
            m.verify_with(&s, sampled),
            Err(VramError::SealInvalid { .. })
        ));
    }
}
