//! Verification: re-read the bytes from device memory (never from a host copy),
//! recompute leaf hashes, compare, and check the seal tag in constant time.

use crate::manager::VramManager;
use crate::shard::{ModelShardHandle, SealedShard};
use crate::{ErrorClass, VramError};
use serde::Serialize;
use std::time::{Duration, Instant};
use vram_audit::AuditEvent;
use vram_core::DeviceError;
use vram_crypto::{
    diff_leaves, verify_leaves, verify_seal_with, CorruptRange, LeafHashes, LeafSize, SealBinding,
    SealDeviceKind, SealMessage, SealTag, Sha256Digest, TreeDescriptor, TreeDigest, LEAF_PREFIX,
    TREE_FORMAT_VERSION,
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
    /// [`VramManager::verify_with`] (start a scrubber instead).
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
        device: shard.device,
        source,
    }
}

/// Checks the tag over the shard's fields and that the recorded leaf hashes
/// still produce the sealed root.
pub(crate) fn check_seal(manager: &VramManager, shard: &SealedShard) -> Result<(), VramError> {
    let inner = &manager.inner;
    let invalid = || VramError::SealInvalid {
        shard_id: shard.shard_id.to_string(),
    };
    if shard.key_id != inner.key_id {
        // A caller's mix-up, not evidence about the bytes: the shard is not
        // marked compromised for it.
        return Err(VramError::KeyMismatch {
            shard_id: shard.shard_id.to_string(),
            sealed_with: shard.key_id.to_string(),
            manager_key: inner.key_id.to_string(),
        });
    }
    verify_seal_with(&inner.seal_mac, &shard.seal_message(), &shard.tag).map_err(|_| invalid())?;
    let recomputed = shard.leaves.root();
    if recomputed.descriptor != shard.tree.descriptor || !recomputed.root.ct_eq(&shard.tree.root) {
        return Err(invalid());
    }
    Ok(())
}

impl VramManager {
    /// Verifies a shard with the manager's default policy (full unless
    /// configured otherwise).
    ///
    /// # Errors
    /// [`VramError::IntegrityViolation`] (fatal, with the corrupt byte ranges)
    /// when device memory differs from the sealed bytes;
    /// [`VramError::SealInvalid`] when the seal does not verify; device errors.
    /// A failure is fatal for the shard: once its bytes or seal are found wrong
    /// it is [compromised](SealedShard::is_compromised) and every later call
    /// returns [`VramError::Compromised`], even if the bytes read back right
    /// again.
    ///
    /// Every failure except invalid arguments emits a critical audit event:
    /// `seal_verification_failed` when the bytes or the seal are wrong (or the
    /// shard was already compromised),
    /// `verification_incomplete` when they could not be checked (a device read
    /// failed), which proves nothing either way.
    pub fn verify_sealed(&self, shard: &SealedShard) -> Result<VerifyReport, VramError> {
        self.verify_with(shard, self.inner.verify_policy)
    }

    /// Verifies a shard with an explicit policy.
    ///
    /// # Errors
    /// As [`VramManager::verify_sealed`].
    pub fn verify_with(
        &self,
        shard: &SealedShard,
        policy: VerifyPolicy,
    ) -> Result<VerifyReport, VramError> {
        let start = Instant::now();
        let policy = effective_policy(policy, shard.leaves.len() as u64);
        let result = shard
            .ensure_not_compromised()
            .and_then(|()| check_seal(self, shard))
            .and_then(|()| match policy {
                VerifyPolicy::Full => self.verify_full(shard, true),
                VerifyPolicy::FullHostReadback => self.verify_full(shard, false),
                VerifyPolicy::Sampled { leaves: 0 } => Err(VramError::InvalidPolicy {
                    policy: policy.name(),
                    reason: "a sample of 0 leaves checks nothing; ask for at least 1",
                }),
                VerifyPolicy::Scrub { .. } => Err(VramError::InvalidPolicy {
                    policy: policy.name(),
                    reason: "scrub steps are run by a Scrubber; ask for full or sampled:K",
                }),
                VerifyPolicy::Sampled { leaves } => {
                    let indices =
                        crate::sampling::random_leaf_indices(shard.leaves.len() as u64, leaves)?;
                    self.verify_leaf_indices(shard, &indices)
                        .map(|bytes| (indices.len() as u64, bytes, HashPath::HostReadback))
                }
            });
        let elapsed = start.elapsed();
        self.finish_verification(shard, policy, result, elapsed, true)
    }

    pub(crate) fn finish_verification(
        &self,
        shard: &SealedShard,
        policy: VerifyPolicy,
        result: Result<(u64, u64, HashPath), VramError>,
        elapsed: Duration,
        audit_success: bool,
    ) -> Result<VerifyReport, VramError> {
        let inner = &self.inner;
        match result {
            Ok((leaves_checked, bytes_checked, hash_path)) => {
                inner.metrics.verified(true, bytes_checked, elapsed);
                if audit_success {
                    inner.audit.record(AuditEvent::SealVerified {
                        shard_id: shard.shard_id.to_string(),
                        gpu_device: shard.device,
                        policy: policy.name(),
                        leaves_checked,
                        bytes_checked,
                    })?;
                }
                tracing::debug!(shard_id = %shard.shard_id, policy = %policy.name(), "verified");
                Ok(VerifyReport {
                    shard_id: shard.shard_id.to_string(),
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
                    inner.metrics.verified(false, 0, elapsed);
                    tracing::error!(shard_id = %shard.shard_id, error = %e, "VERIFICATION FAILED");
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
                    if let Err(audit_err) = inner.audit.record(AuditEvent::SealVerificationFailed {
                        shard_id: shard.shard_id.to_string(),
                        gpu_device: shard.device,
                        policy: policy.name(),
                        reason: e.to_string(),
                        corrupt_ranges: ranges,
                    }) {
                        tracing::error!(error = %audit_err, "could not audit a verification failure");
                    }
                } else if e.class() != ErrorClass::InvalidInput {
                    // The bytes could not be checked (a device read failed...):
                    // nothing was proven, and the record says so.
                    inner.metrics.verification_incomplete();
                    tracing::error!(shard_id = %shard.shard_id, error = %e, "verification could not complete");
                    if let Err(audit_err) = inner.audit.record(AuditEvent::VerificationIncomplete {
                        shard_id: shard.shard_id.to_string(),
                        gpu_device: shard.device,
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

    /// Full verification: on-device leaf hashing when the device offers it
    /// (and `on_device` allows it), else read back and hashed on the host.
    fn verify_full(
        &self,
        shard: &SealedShard,
        on_device: bool,
    ) -> Result<(u64, u64, HashPath), VramError> {
        let count = shard.leaves.len() as u64;
        let leaf = shard.tree.descriptor.leaf_size;
        let device_hashes = if on_device {
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
                let actual = LeafHashes::from_parts(shard.tree.descriptor, hashes)?;
                report_diff(shard, &actual)?;
                return Ok((count, shard.len, HashPath::OnDevice));
            }
            Err(DeviceError::Unsupported { .. }) => {}
            Err(e) => return Err(dev(shard)(e)),
        }
        let actual = read_back_leaves(shard, self.inner.staging_bytes)?;
        report_diff(shard, &actual)?;
        Ok((count, shard.len, HashPath::HostReadback))
    }

    /// Re-reads and hashes the given leaves; returns the bytes hashed.
    pub(crate) fn verify_leaf_indices(
        &self,
        shard: &SealedShard,
        indices: &[u64],
    ) -> Result<u64, VramError> {
        let descriptor = shard.tree.descriptor;
        let mut recomputed = Vec::with_capacity(indices.len());
        let chunk = self.inner.staging_bytes;
        let mut buf = Vec::new();
        let mut bytes = 0u64;
        for &i in indices {
            let range = descriptor.leaf_range(i).ok_or(VramError::Crypto(
                vram_crypto::CryptoError::LeafIndexOutOfRange {
                    index: i,
                    count: descriptor.leaf_count(),
                },
            ))?;
            let read =
                |offset, buf: &mut [u8]| shard.buffer().read_at(offset, buf).map_err(dev(shard));
            recomputed.push(vram_crypto::leaf_hash_from(
                range.clone(),
                chunk,
                &mut buf,
                read,
            )?);
            bytes = bytes.saturating_add(range.end.saturating_sub(range.start));
        }
        let corrupt = verify_leaves(&shard.leaves, indices, &recomputed)?;
        if corrupt.is_empty() {
            Ok(bytes)
        } else {
            Err(integrity(shard, corrupt))
        }
    }
}

fn integrity(shard: &SealedShard, corrupt: Vec<CorruptRange>) -> VramError {
    VramError::IntegrityViolation {
        shard_id: shard.shard_id.to_string(),
        device: shard.device,
        corrupt,
    }
}

fn report_diff(shard: &SealedShard, actual: &LeafHashes) -> Result<(), VramError> {
    let corrupt = diff_leaves(&shard.leaves, actual)?;
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
        shard.tree.descriptor.leaf_size,
        shard.len,
        staging,
        |offset, buf: &mut [u8]| shard.buffer().read_at(offset, buf).map_err(dev(shard)),
    )
}

/// Checks a handle's tag against this manager's seal key; returns its seal
/// format version.
pub(crate) fn check_handle(manager: &VramManager, h: &ModelShardHandle) -> Result<u8, VramError> {
    let invalid = || VramError::SealInvalid {
        shard_id: vram_validation::escape_for_log(&h.shard_id, 64),
    };
    let inner = &manager.inner;
    if h.key_id != inner.key_id.to_string() {
        return Err(invalid());
    }
    let leaf = LeafSize::new(h.leaf_size).map_err(|_| invalid())?;
    let root: Sha256Digest = h.digest.parse().map_err(|_| invalid())?;
    let tag: SealTag = h.signature.parse().map_err(|_| invalid())?;
    // Only the canonical spelling (lower-case hex, as `handle()` writes it) is
    // accepted: a handle is compared as a whole elsewhere (`verify_handle`),
    // and two spellings of one seal must not both pass here.
    if root.to_string() != h.digest || tag.to_string() != h.signature {
        return Err(invalid());
    }
    let tree = TreeDigest {
        descriptor: TreeDescriptor {
            version: TREE_FORMAT_VERSION,
            leaf_size: leaf,
            total_len: h.vram_bytes,
        },
        root,
    };
    let binding = handle_binding(h).ok_or_else(invalid)?;
    let msg = SealMessage {
        shard_id: &h.shard_id,
        model_ref: &h.model_ref,
        device_index: h.gpu_device,
        byte_len: h.vram_bytes,
        tree: &tree,
        sealed_at_ns: h.sealed_at,
        shard_index: h.shard_index,
        shard_total: h.shard_total,
        key_id: *inner.key_id.as_bytes(),
        binding,
    };
    verify_seal_with(&inner.seal_mac, &msg, &tag).map_err(|_| invalid())?;
    // An authentic v2 handle that names another device than ours of that
    // index (a mock seal shown to a CUDA worker, another GPU) is refused.
    if let (Some(b), Ok(device)) = (binding, manager.device(h.gpu_device)) {
        let info = device.info();
        if crate::manager::seal_device_kind(info.kind) != b.device_kind
            || info.uuid != b.device_uuid
        {
            return Err(VramError::WrongDevice {
                shard_id: vram_validation::escape_for_log(&h.shard_id, 64),
                device: h.gpu_device,
            });
        }
    }
    Ok(msg.version())
}

/// A handle's v2 (and v3) fields as a seal binding: `Some(None)` for a
/// well-formed v1 handle (none of them present), `Some(Some(_))` for a
/// well-formed v2 handle (no provenance) or v3 handle (with one), `None` for
/// anything else (an unknown version, a v1 handle carrying v2 fields, a v2
/// handle carrying a provenance, a v3 handle without one, a missing or
/// non-canonical field).
fn handle_binding(h: &ModelShardHandle) -> Option<Option<SealBinding<'_>>> {
    let provenance = h.provenance.as_ref().map(crate::Provenance::as_seal);
    match (h.seal_version, provenance) {
        (vram_crypto::SEAL_FORMAT_V1, None) => {
            let bare = h.device_kind.is_none()
                && h.device_uuid.is_none()
                && h.worker_id.is_none()
                && h.set_id.is_none();
            bare.then_some(None)
        }
        (vram_crypto::SEAL_FORMAT_V2, None) | (vram_crypto::SEAL_FORMAT_V3, Some(_)) => {
            let device_kind = SealDeviceKind::from_name(h.device_kind.as_deref()?)?;
            let device_uuid = match h.device_uuid.as_deref() {
                Some(u) => Some(vram_validation::hex::decode_lower(u)?),
                None => None,
            };
            Some(Some(SealBinding {
                device_kind,
                device_uuid,
                worker_id: h.worker_id.as_deref()?,
                set_id: vram_validation::hex::decode_lower(h.set_id.as_deref()?)?,
                provenance,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use crate::{VramConfig, VramError, VramManager};
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
        let seal = || m.seal_model(&data, 0).unwrap();
        let invalid = |s: &crate::SealedShard| {
            matches!(m.verify_sealed(s), Err(VramError::SealInvalid { .. }))
        };

        let mut s = seal();
        let (d, mut hashes) = s.leaves.clone().into_parts();
        hashes[1] = Sha256Digest([0xAB; 32]);
        s.leaves = LeafHashes::from_parts(d, hashes).unwrap();
        assert!(invalid(&s), "altered leaf list");

        let mut s = seal();
        s.tree.root = Sha256Digest([1; 32]);
        assert!(invalid(&s), "altered root");

        let mut s = seal();
        s.len -= 1;
        assert!(invalid(&s), "altered length");

        let mut s = seal();
        s.sealed_at_ns += 1;
        assert!(invalid(&s), "altered seal time");

        let mut s = seal();
        s.key_id = vram_secrets::KeyId::from_bytes([0; 8]);
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
        s.provenance = Some(provenance.clone());
        assert!(invalid(&s), "provenance added");
        let mut request = crate::SealRequest::new(
            vram_validation::ModelRef::new("hf://org/model@main").unwrap(),
            0,
        );
        request.provenance = Some(provenance);
        let signed = || m.seal(&request, &data).unwrap();
        m.verify_sealed(&signed()).unwrap();
        let mut s = signed();
        if let Some(p) = s.provenance.as_mut() {
            p.statement_subject_sha256[5] ^= 4;
        }
        assert!(invalid(&s), "statement digest edited");
        let mut s = signed();
        if let Some(p) = s.provenance.as_mut() {
            p.resource_name = vram_validation::ProvenanceName::new("other").unwrap();
        }
        assert!(invalid(&s), "resource name edited");
        let mut s = signed();
        s.provenance = None;
        assert!(invalid(&s), "provenance dropped");

        // And an untouched shard verifies.
        m.verify_sealed(&seal()).unwrap();
    }
}
