//! Typed audit events.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A half-open byte range `[start, end)` within a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

/// The provenance a seal binds (seal format v3), as a `vram_sealed` record
/// carries it: which signed model statement, and which file of it, the
/// sealed bytes were checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealProvenanceRecord {
    /// SHA-256 of the publisher's public key, 64 lower-case hex digits.
    pub publisher_key_sha256: String,
    /// SHA-256 of the signed in-toto statement as signed (the DSSE payload
    /// bytes), 64 lower-case hex digits.
    pub statement_sha256: String,
    /// The model's name in the signed statement.
    pub model_name: String,
    /// The file's name in the signed manifest (`.` for a single-file model).
    pub resource_name: String,
}

/// A small file bound to a sealed model, as a `model_bound` record names
/// it: its name in the model directory, length and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundFileRecord {
    /// The file's name in the model directory (`tokenizer.json`).
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its SHA-256, 64 lower-case hex digits.
    pub sha256: String,
}

/// How much attention an event deserves.
///
/// Critical events are always fsynced before [`AuditSink::record`](crate::AuditSink::record)
/// returns, and by default a failure to write one fails the caller's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine: the system did what it was asked.
    Info,
    /// Something was refused or repaired, with no loss of integrity.
    Warning,
    /// Integrity or policy is at stake.
    Critical,
}

/// One thing that happened, as written in the `"event"` field of a record.
///
/// Serialized as a JSON object tagged by `"type"` (snake_case variant names).
///
/// Callers must never put device pointers, host addresses, key material or raw
/// untrusted input in an event: records are read by operators and shipped to
/// other systems. Identify memory by shard id and device index, keys by
/// [`AuditKey::key_id`](crate::AuditKey::key_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A shard was copied to device memory and sealed.
    VramSealed {
        /// The shard's id.
        shard_id: String,
        /// The model the shard belongs to.
        model_ref: String,
        /// Device index.
        gpu_device: u32,
        /// What kind of device holds it (`cuda`, `mock`, ...).
        device_kind: String,
        /// Bytes resident.
        vram_bytes: u64,
        /// Hex chunk-tree digest the seal commits to.
        tree_digest: String,
        /// Leaf size of the tree digest in bytes.
        leaf_size: u64,
        /// Id of the seal key.
        key_id: String,
        /// Which signed model the bytes were checked against before sealing,
        /// when the seal carries a provenance (seal format v3). Absent from
        /// the JSON otherwise, so records of other seals read and write as
        /// before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provenance: Option<SealProvenanceRecord>,
    },
    /// A shard's seal was re-verified against device memory and held.
    SealVerified {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// Verification policy (`full`, `sampled`, `scrub`).
        policy: String,
        /// Leaves re-hashed.
        leaves_checked: u64,
        /// Bytes re-hashed.
        bytes_checked: u64,
    },
    /// A shard's seal did not hold: the bytes on the device changed.
    SealVerificationFailed {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// Verification policy.
        policy: String,
        /// Why verification failed.
        reason: String,
        /// Byte ranges whose leaves did not match.
        corrupt_ranges: Vec<ByteRange>,
    },
    /// A verification could not be carried out (the device could not be
    /// read). Nothing was proven about the bytes, so the shard must not be
    /// trusted until a later verification succeeds.
    VerificationIncomplete {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// Verification policy.
        policy: String,
        /// Why verification could not complete.
        reason: String,
    },
    /// A lease (access to a shard's memory for computation) was refused: the
    /// shard was compromised already, or the verification the lease policy
    /// asks for before each use failed or could not run. Written for every
    /// refusal, at once.
    LeaseRefused {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// The lease policy (`sampled:K`, `full`, `recent_full:SECONDS+K`).
        policy: String,
        /// Why.
        reason: String,
    },
    /// A small file bound to a sealed model (its config, tokenizer, pooling
    /// config) was refused to the engine that asked for it: it changed since
    /// the model was sealed, or the model's binding does not verify.
    ModelFileRefused {
        /// The model's reference.
        model: String,
        /// The file's name in the snapshot.
        file: String,
        /// Why (both digests for a changed file).
        reason: String,
    },
    /// Leases granted on a shard since the previous record of this kind for
    /// it, aggregated so that a busy server writes one record per shard per
    /// interval (and one when the shard is released), not one per request.
    LeasesGranted {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// Leases granted in the interval.
        count: u64,
        /// Leaves re-hashed by their verifications.
        leaves_checked: u64,
        /// Bytes re-hashed by their verifications.
        bytes_checked: u64,
        /// Time their verifications took, in nanoseconds.
        verify_ns: u64,
    },
    /// A seal attempt failed (expected digest mismatch, device write failure...).
    SealFailed {
        /// The shard's id.
        shard_id: String,
        /// Which stage failed (`hash`, `copy`, `expected_digest`, ...).
        stage: String,
        /// Why.
        reason: String,
    },
    /// Device memory was reserved and allocated for a shard.
    VramAllocated {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// Bytes allocated.
        bytes: u64,
    },
    /// A device allocation was refused or failed.
    VramAllocationFailed {
        /// Device index.
        gpu_device: u32,
        /// Bytes asked for.
        requested: u64,
        /// Bytes available at the time.
        available: u64,
        /// Why.
        reason: String,
    },
    /// A shard's device memory was released.
    VramDeallocated {
        /// The shard's id.
        shard_id: String,
        /// Device index.
        gpu_device: u32,
        /// Bytes released.
        bytes: u64,
    },
    /// A device or request broke the VRAM-only policy.
    PolicyViolation {
        /// Device index.
        gpu_device: u32,
        /// The policy broken.
        policy: String,
        /// What was found.
        detail: String,
    },
    /// The genesis record: the first record of every log (seq 1), written when
    /// the log is created. It is how a file is recognised as a log of this key
    /// before anything in it is changed.
    LogCreated {
        /// The record format version ([`RECORD_FORMAT`](crate::RECORD_FORMAT)).
        format: u32,
        /// Id of the audit key the log is written under
        /// ([`AuditKey::key_id`](crate::AuditKey::key_id)).
        key_id: String,
        /// A random 128-bit id of this log, 32 lowercase hex digits: tells
        /// apart two logs written under the same key.
        log_id: String,
        /// Fingerprint of the public key that signs this log's checkpoints
        /// ([`AuditPublicKey::fingerprint`](crate::AuditPublicKey::fingerprint)):
        /// which key a verifier without the secret must hold. Absent from
        /// logs written without a signing key (and before signing existed),
        /// so their genesis records read and write as before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_key: Option<String>,
    },
    /// The log was opened: `"continued"` when an existing chain is continued.
    /// (Logs written before genesis records existed also began with one of
    /// reason `"new"`; a new log now begins with [`AuditEvent::LogCreated`].)
    LogOpened {
        /// `new` or `continued`.
        reason: String,
    },
    /// On reopening, an incomplete last line (a crash in the middle of a write)
    /// was cut off.
    TornTailRecovered {
        /// Bytes removed.
        discarded_bytes: u64,
        /// 1-based line number, in the segment, where the removed bytes began.
        at_line: u64,
    },
    /// The last record of a segment: the chain continues in `next_file`.
    Rotated {
        /// File name (not path) of the next segment.
        next_file: String,
    },
    /// A signed checkpoint: the position of the record before this one,
    /// signed with the log's Ed25519 signing key so that anyone holding the
    /// public key can check every record up to it without the secret (see
    /// docs/audit-log.md, *Signed checkpoints*).
    SignedCheckpoint {
        /// Sequence number of the record it covers (this record's `seq` - 1).
        seq: u64,
        /// SHA-256 of that record's line (this record's `prev`).
        hash: String,
        /// The log's id.
        log_id: String,
        /// Fingerprint of the signing key.
        signing_key: String,
        /// Ed25519 signature over the checkpoint message, 128 lowercase hex digits.
        signature: String,
    },
    /// A model's small files (config, tokenizer, modules) were bound to its
    /// shards' seals by one tag under the seal key: which files, with which
    /// bytes. Written once per sealed model, after its shards' `vram_sealed`
    /// records.
    ModelBound {
        /// The model's reference.
        model: String,
        /// Its shards' ids, in position order.
        shards: Vec<String>,
        /// The files bound, in binding order.
        files: Vec<BoundFileRecord>,
        /// Id of the seal key the binding is under.
        key_id: String,
    },
}

impl AuditEvent {
    /// How much attention the event deserves.
    #[must_use]
    pub fn severity(&self) -> Severity {
        match self {
            Self::SealVerificationFailed { .. }
            | Self::VerificationIncomplete { .. }
            | Self::PolicyViolation { .. }
            | Self::LeaseRefused { .. }
            | Self::ModelFileRefused { .. }
            | Self::SealFailed { .. } => Severity::Critical,
            Self::VramAllocationFailed { .. } | Self::TornTailRecovered { .. } => Severity::Warning,
            Self::VramSealed { .. }
            | Self::ModelBound { .. }
            | Self::SealVerified { .. }
            | Self::LeasesGranted { .. }
            | Self::VramAllocated { .. }
            | Self::VramDeallocated { .. }
            | Self::LogCreated { .. }
            | Self::LogOpened { .. }
            | Self::Rotated { .. }
            | Self::SignedCheckpoint { .. } => Severity::Info,
        }
    }

    /// The shard the event is about, for events about one.
    #[must_use]
    pub fn shard_id(&self) -> Option<&str> {
        match self {
            Self::VramSealed { shard_id, .. }
            | Self::SealVerified { shard_id, .. }
            | Self::SealVerificationFailed { shard_id, .. }
            | Self::VerificationIncomplete { shard_id, .. }
            | Self::LeaseRefused { shard_id, .. }
            | Self::LeasesGranted { shard_id, .. }
            | Self::SealFailed { shard_id, .. }
            | Self::VramAllocated { shard_id, .. }
            | Self::VramDeallocated { shard_id, .. } => Some(shard_id),
            Self::VramAllocationFailed { .. }
            | Self::ModelFileRefused { .. }
            | Self::ModelBound { .. }
            | Self::PolicyViolation { .. }
            | Self::LogCreated { .. }
            | Self::LogOpened { .. }
            | Self::TornTailRecovered { .. }
            | Self::Rotated { .. }
            | Self::SignedCheckpoint { .. } => None,
        }
    }

    /// The `"type"` tag of every event this build knows, as [`Self::kind`]
    /// gives them. A record of another type is an [`UnknownEvent`]; a record
    /// of one of these types that does not parse is malformed. (A test checks
    /// this list against serde's.)
    pub(crate) const KINDS: [&'static str; 18] = [
        "vram_sealed",
        "seal_verified",
        "seal_verification_failed",
        "verification_incomplete",
        "lease_refused",
        "model_file_refused",
        "leases_granted",
        "seal_failed",
        "vram_allocated",
        "vram_allocation_failed",
        "vram_deallocated",
        "policy_violation",
        "log_created",
        "log_opened",
        "torn_tail_recovered",
        "rotated",
        "signed_checkpoint",
        "model_bound",
    ];

    /// Every event type this build knows (the `"type"` tags), for callers
    /// that check a type named by a user.
    #[must_use]
    pub fn known_kinds() -> &'static [&'static str] {
        &Self::KINDS
    }

    /// The event's `"type"` tag, e.g. `"vram_sealed"`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VramSealed { .. } => "vram_sealed",
            Self::SealVerified { .. } => "seal_verified",
            Self::SealVerificationFailed { .. } => "seal_verification_failed",
            Self::VerificationIncomplete { .. } => "verification_incomplete",
            Self::LeaseRefused { .. } => "lease_refused",
            Self::ModelFileRefused { .. } => "model_file_refused",
            Self::ModelBound { .. } => "model_bound",
            Self::LeasesGranted { .. } => "leases_granted",
            Self::SealFailed { .. } => "seal_failed",
            Self::VramAllocated { .. } => "vram_allocated",
            Self::VramAllocationFailed { .. } => "vram_allocation_failed",
            Self::VramDeallocated { .. } => "vram_deallocated",
            Self::PolicyViolation { .. } => "policy_violation",
            Self::LogCreated { .. } => "log_created",
            Self::LogOpened { .. } => "log_opened",
            Self::TornTailRecovered { .. } => "torn_tail_recovered",
            Self::Rotated { .. } => "rotated",
            Self::SignedCheckpoint { .. } => "signed_checkpoint",
        }
    }
}

/// The event of an authentic record whose `"type"` this build does not know:
/// written by a newer writer (a rolling upgrade puts new writers before new
/// verifiers). Its MAC and its link in the chain verify like any other
/// record's; only its meaning is unknown here, so nothing is read from its
/// fields.
///
/// Both the type and the JSON are the writer's text, as written: escape them
/// before printing them.
#[derive(Debug, Clone)]
pub struct UnknownEvent {
    kind: String,
    json: Box<RawValue>,
}

impl UnknownEvent {
    /// The event when `json` is an object whose `"type"` is a string that is
    /// not one of [`AuditEvent::KINDS`]; `None` otherwise (not an object, no
    /// string `"type"`, a duplicated `"type"`, or a type this build knows).
    pub(crate) fn from_raw(json: Box<RawValue>) -> Option<Self> {
        /// Only the tag; the other fields are not this build's to interpret.
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        if !json.get().starts_with('{') {
            // serde_json reads a struct from an array too; an event is an object.
            return None;
        }
        let Tag { kind } = serde_json::from_str(json.get()).ok()?;
        if AuditEvent::KINDS.contains(&kind.as_str()) {
            return None;
        }
        Some(Self { kind, json })
    }

    /// The event's `"type"`, as written (untrusted text).
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The event object's JSON, exactly as written in the record (untrusted
    /// text, as long as the record allows: at most 1 MiB).
    #[must_use]
    pub fn json(&self) -> &str {
        self.json.get()
    }
}

impl PartialEq for UnknownEvent {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.json.get() == other.json.get()
    }
}

impl Eq for UnknownEvent {}

impl Serialize for UnknownEvent {
    /// The event object as written.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// The event of a record as read back: one this build knows, or one of a type
/// it does not know ([`UnknownEvent`]). Serialized as the event object itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum RecordedEvent {
    /// An event this build knows.
    Known(AuditEvent),
    /// An event of a type this build does not know (a newer writer's).
    Unknown(UnknownEvent),
}

impl RecordedEvent {
    /// The event, when this build knows its type.
    #[must_use]
    pub fn known(&self) -> Option<&AuditEvent> {
        match self {
            Self::Known(event) => Some(event),
            Self::Unknown(_) => None,
        }
    }

    /// The `"type"` tag. For an unknown event it is the writer's text:
    /// escape it before printing it.
    #[must_use]
    pub fn kind(&self) -> &str {
        match self {
            Self::Known(event) => event.kind(),
            Self::Unknown(event) => event.kind(),
        }
    }

    /// The shard the event is about, for a known event about one. The
    /// fields of an unknown event are not interpreted: `None`.
    #[must_use]
    pub fn shard_id(&self) -> Option<&str> {
        self.known().and_then(AuditEvent::shard_id)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn all() -> Vec<AuditEvent> {
        vec![
            AuditEvent::VramSealed {
                shard_id: "s".into(),
                model_ref: "m".into(),
                gpu_device: 0,
                device_kind: "mock".into(),
                vram_bytes: 1,
                tree_digest: "d".into(),
                leaf_size: 4096,
                key_id: "k".into(),
                provenance: None,
            },
            AuditEvent::SealVerified {
                shard_id: "s".into(),
                gpu_device: 0,
                policy: "full".into(),
                leaves_checked: 1,
                bytes_checked: 1,
            },
            AuditEvent::SealVerificationFailed {
                shard_id: "s".into(),
                gpu_device: 0,
                policy: "full".into(),
                reason: "r".into(),
                corrupt_ranges: vec![ByteRange {
                    start: 0,
                    end: 4096,
                }],
            },
            AuditEvent::VerificationIncomplete {
                shard_id: "s".into(),
                gpu_device: 0,
                policy: "full".into(),
                reason: "r".into(),
            },
            AuditEvent::LeaseRefused {
                shard_id: "s".into(),
                gpu_device: 0,
                policy: "sampled:4".into(),
                reason: "r".into(),
            },
            AuditEvent::ModelFileRefused {
                model: "m".into(),
                file: "tokenizer.json".into(),
                reason: "r".into(),
            },
            AuditEvent::LeasesGranted {
                shard_id: "s".into(),
                gpu_device: 0,
                count: 3,
                leaves_checked: 12,
                bytes_checked: 12,
                verify_ns: 5,
            },
            AuditEvent::SealFailed {
                shard_id: "s".into(),
                stage: "copy".into(),
                reason: "r".into(),
            },
            AuditEvent::VramAllocated {
                shard_id: "s".into(),
                gpu_device: 0,
                bytes: 1,
            },
            AuditEvent::VramAllocationFailed {
                gpu_device: 0,
                requested: 2,
                available: 1,
                reason: "r".into(),
            },
            AuditEvent::VramDeallocated {
                shard_id: "s".into(),
                gpu_device: 0,
                bytes: 1,
            },
            AuditEvent::PolicyViolation {
                gpu_device: 0,
                policy: "vram_only".into(),
                detail: "d".into(),
            },
            AuditEvent::LogCreated {
                format: 1,
                key_id: "0011223344556677".into(),
                log_id: "ab".repeat(16),
                signing_key: Some("8899aabbccddeeff".into()),
            },
            AuditEvent::LogOpened {
                reason: "new".into(),
            },
            AuditEvent::TornTailRecovered {
                discarded_bytes: 3,
                at_line: 2,
            },
            AuditEvent::Rotated {
                next_file: "audit.jsonl.1".into(),
            },
            AuditEvent::SignedCheckpoint {
                seq: 9,
                hash: "cd".repeat(32),
                log_id: "ab".repeat(16),
                signing_key: "8899aabbccddeeff".into(),
                signature: "ef".repeat(64),
            },
            AuditEvent::ModelBound {
                model: "m".into(),
                shards: vec!["s".into()],
                files: vec![BoundFileRecord {
                    name: "tokenizer.json".into(),
                    bytes: 2,
                    sha256: "ab".repeat(32),
                }],
                key_id: "k".into(),
            },
        ]
    }

    #[test]
    fn tag_matches_kind_and_round_trips() {
        for e in all() {
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["type"], e.kind(), "{json}");
            let back: AuditEvent = serde_json::from_value(json).unwrap();
            assert_eq!(back, e);
        }
    }

    /// A `vram_sealed` record without provenance is byte-identical to
    /// records written before provenance existed; one with it carries a
    /// `provenance` object and round-trips.
    #[test]
    fn vram_sealed_provenance_is_optional_and_absent_when_none() {
        let plain = all().remove(0);
        let json = serde_json::to_string(&plain).unwrap();
        assert_eq!(
            json,
            r#"{"type":"vram_sealed","shard_id":"s","model_ref":"m","gpu_device":0,"device_kind":"mock","vram_bytes":1,"tree_digest":"d","leaf_size":4096,"key_id":"k"}"#
        );
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plain);
        let AuditEvent::VramSealed {
            shard_id,
            model_ref,
            gpu_device,
            device_kind,
            vram_bytes,
            tree_digest,
            leaf_size,
            key_id,
            ..
        } = plain
        else {
            unreachable!("all() starts with vram_sealed")
        };
        let signed = AuditEvent::VramSealed {
            shard_id,
            model_ref,
            gpu_device,
            device_kind,
            vram_bytes,
            tree_digest,
            leaf_size,
            key_id,
            provenance: Some(SealProvenanceRecord {
                publisher_key_sha256: "ab".repeat(32),
                statement_sha256: "cd".repeat(32),
                model_name: "org/model".into(),
                resource_name: "sub/tokenizer.json".into(),
            }),
        };
        let json = serde_json::to_value(&signed).unwrap();
        assert_eq!(json["provenance"]["resource_name"], "sub/tokenizer.json");
        assert_eq!(json["provenance"]["publisher_key_sha256"], "ab".repeat(32));
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, signed);
    }

    /// `AuditEvent::KINDS` is exactly serde's list of the enum's tags (as
    /// serde names them in its error for an unknown one), and every event's
    /// `kind()`: a variant added without its name there would make records
    /// of it with a bad field pass as unknown rather than malformed.
    #[test]
    fn kinds_are_the_tags_serde_knows() {
        let err = serde_json::from_str::<AuditEvent>(r#"{"type":"?"}"#).unwrap_err();
        let message = err.to_string();
        let listed = message
            .split_once("expected one of ")
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("{message}"));
        let serde_tags: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert_eq!(serde_tags, AuditEvent::KINDS, "{message}");
        let kinds: Vec<&str> = all().iter().map(AuditEvent::kind).collect();
        assert_eq!(kinds, AuditEvent::KINDS);
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn an_unknown_event_is_an_object_with_a_string_type_this_build_does_not_know() {
        let json = r#"{"type":"from_the_future","shard_id":"s","x":[1,2]}"#;
        let unknown = UnknownEvent::from_raw(raw(json)).unwrap();
        assert_eq!((unknown.kind(), unknown.json()), ("from_the_future", json));
        // Serialized as written, byte for byte (key order included).
        assert_eq!(serde_json::to_string(&unknown).unwrap(), json);
        for kind in AuditEvent::KINDS {
            let known = format!(r#"{{"type":"{kind}"}}"#);
            assert!(UnknownEvent::from_raw(raw(&known)).is_none(), "{kind}");
        }
        for not_one in [
            r#"["from_the_future"]"#,
            r#""from_the_future""#,
            "7",
            "null",
            r#"{"x":1}"#,
            r#"{"type":null}"#,
            r#"{"type":"a","type":"b"}"#,
        ] {
            assert!(UnknownEvent::from_raw(raw(not_one)).is_none(), "{not_one}");
        }
    }

    #[test]
    fn a_recorded_event_says_what_it_knows() {
        let known = RecordedEvent::Known(all().remove(8));
        assert_eq!(known.kind(), "vram_allocated");
        assert_eq!(known.shard_id(), Some("s"));
        assert_eq!(known.known(), Some(&all()[8]));
        assert_eq!(
            serde_json::to_string(&known).unwrap(),
            serde_json::to_string(&all()[8]).unwrap()
        );

        let json = r#"{"type":"from_the_future","shard_id":"s"}"#;
        let unknown = RecordedEvent::Unknown(UnknownEvent::from_raw(raw(json)).unwrap());
        assert_eq!(unknown.kind(), "from_the_future");
        // Its fields are not interpreted.
        assert_eq!(unknown.shard_id(), None);
        assert_eq!(unknown.known(), None);
        assert_eq!(serde_json::to_string(&unknown).unwrap(), json);

        // Equal when written alike, whatever the allocation.
        let same = RecordedEvent::Unknown(UnknownEvent::from_raw(raw(json)).unwrap());
        assert_eq!(unknown, same);
        let other_fields = r#"{"type":"from_the_future","shard_id":"t"}"#;
        let other = RecordedEvent::Unknown(UnknownEvent::from_raw(raw(other_fields)).unwrap());
        assert_ne!(unknown, other);
        let other_kind = r#"{"type":"from_the_past","shard_id":"s"}"#;
        let other = RecordedEvent::Unknown(UnknownEvent::from_raw(raw(other_kind)).unwrap());
        assert_ne!(unknown, other);
        assert_ne!(unknown, known);
    }

    #[test]
    fn severities() {
        let sev: Vec<_> = all().iter().map(AuditEvent::severity).collect();
        use Severity::*;
        assert_eq!(
            sev,
            [
                Info, Info, Critical, Critical, Critical, Critical, Info, Critical, Info, Warning,
                Info, Critical, Info, Info, Warning, Info, Info, Info
            ]
        );
    }
}
