//! The facade's error type: what went wrong, whether retrying can help, and
//! numbers a user can act on. Never pointers, key material or raw input.

use vram_crypto::CorruptRange;

/// How a caller should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Trying again later may succeed (memory freed, transient allocation failure).
    Retriable,
    /// The shard (or request) must not be used: integrity, seal or policy failure.
    Fatal,
    /// The caller passed something invalid; fix the input.
    InvalidInput,
    /// The environment is wrong: no device, I/O failure, audit trail unavailable.
    Environment,
}

/// Errors of [`VramManager`](crate::VramManager) and [`SealedShard`](crate::SealedShard).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VramError {
    /// An identifier, size or other input failed validation.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] vram_validation::ValidationError),

    /// The manager's configuration is unusable.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What to fix.
        reason: String,
    },

    /// No device with this index is managed.
    #[error("unknown device {index}: this manager has {count} device(s)")]
    UnknownDevice {
        /// Requested device index.
        index: u32,
        /// Devices managed.
        count: u32,
    },

    /// Not enough VRAM left under the configured headroom.
    #[error("insufficient VRAM on device {device}: needed {needed} bytes ({needed_h}), {available} bytes ({available_h}) available")]
    InsufficientVram {
        /// Device index.
        device: u32,
        /// Bytes requested.
        needed: u64,
        /// Bytes available under the capacity limit.
        available: u64,
        /// `needed`, human-readable.
        needed_h: String,
        /// `available`, human-readable.
        available_h: String,
    },

    /// The device refused the allocation.
    #[error("allocation of {bytes} bytes failed on device {device}: {source}")]
    AllocationFailed {
        /// Device index.
        device: u32,
        /// Bytes requested.
        bytes: u64,
        /// What the device said.
        source: vram_core::DeviceError,
    },

    /// A device operation other than allocation failed.
    #[error("device {device}: {source}")]
    Device {
        /// Device index.
        device: u32,
        /// What the device said.
        source: vram_core::DeviceError,
    },

    /// The VRAM-only policy refuses this device or request.
    #[error("policy violation: {0}")]
    PolicyViolation(#[from] vram_core::PolicyViolation),

    /// The plain SHA-256 of the sealed bytes differs from the expected value.
    #[error(
        "expected SHA-256 {expected} but the model bytes hash to {actual}; nothing was sealed"
    )]
    DigestMismatch {
        /// The value the caller expected (validated hex).
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },

    /// A seal that hashed on the device ([`crate::SealHashing::OnDevice`])
    /// found a cross-checked leaf whose device bytes hash differently from the
    /// same leaf of the source: the bytes changed on their way to the device,
    /// or the source changed while it was sealed. Nothing was sealed.
    #[error("leaf {leaf} (bytes {start}..{end}) on device {device} differs from the source after the upload; nothing was sealed")]
    UploadMismatch {
        /// Device index.
        device: u32,
        /// The leaf that differs.
        leaf: u64,
        /// Its first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
    },

    /// The source delivered a different number of bytes than announced: it
    /// changed while it was sealed (a file truncated or grown, a stream cut
    /// short or running long). Nothing was sealed. One class
    /// ([`ErrorClass::Environment`]) whichever way the length moved.
    #[error("the model source changed while it was sealed: {announced} bytes announced, {read} found; nothing was sealed")]
    LengthMismatch {
        /// Length given by the caller.
        announced: u64,
        /// Bytes actually read before EOF, the file's length afterwards, or
        /// `announced + 1` when the source ran past the announced end.
        read: u64,
    },

    /// Reading the model source failed.
    #[error("reading model bytes failed: {kind}")]
    Io {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
    },

    /// The seal's tag does not verify: some sealed field (or the tag) was altered.
    #[error("seal of shard {shard_id} is invalid: its fields or tag were altered")]
    SealInvalid {
        /// The shard (validated id).
        shard_id: String,
    },

    /// Device memory no longer holds the sealed bytes.
    #[error("integrity violation on shard {shard_id} (device {device}): {} corrupt range(s), first at bytes {}{}", corrupt.len(), first_range(corrupt), in_tensors(tensors))]
    IntegrityViolation {
        /// The shard (validated id).
        shard_id: String,
        /// Device index.
        device: u32,
        /// Corrupt byte ranges, in leaf granularity.
        corrupt: Vec<CorruptRange>,
        /// For a shard holding a safetensors file whose table was read, the
        /// tensors the corrupt ranges touch, each as `NAME, bytes A..B of N`
        /// (offsets inside the tensor; names escaped), or `the safetensors
        /// header`; at most [`MAX_NAMED_TENSORS`](crate::tensors::MAX_NAMED_TENSORS).
        tensors: Vec<String>,
    },

    /// The shard was sealed under another key than this manager's: it belongs
    /// to another manager (or worker secret). Nothing is known about its bytes.
    #[error("shard {shard_id} was sealed under key {sealed_with}, not this manager's key {manager_key}: verify it with the manager that sealed it")]
    KeyMismatch {
        /// The shard (validated id).
        shard_id: String,
        /// Key id in the shard's seal.
        sealed_with: String,
        /// Key id of this manager's seal key.
        manager_key: String,
    },

    /// A handle's seal (format v2) names a device kind or UUID other than
    /// this manager's device with the same index.
    #[error("shard {shard_id} was sealed on a different device than this manager's device {device} (device kind or UUID differ): check it on the worker that sealed it")]
    WrongDevice {
        /// The shard (escaped).
        shard_id: String,
        /// The device index the handle names.
        device: u32,
    },

    /// A handle's seal (format v2 or v3) names another worker id than this
    /// manager's.
    #[error("shard {shard_id} was sealed by another worker than this one: check it on the worker that sealed it")]
    WrongWorker {
        /// The shard (escaped).
        shard_id: String,
    },

    /// A handle of seal format 1, which binds no device kind, device UUID,
    /// worker or set, shown to a check that does not accept it.
    #[error("the handle of shard {shard_id} is of seal format 1, which binds no device or worker: seal the model again for a current handle, or accept v1 handles explicitly (check_handle_allow_v1)")]
    UnboundHandle {
        /// The shard (escaped).
        shard_id: String,
    },

    /// The shard failed an earlier verification and is never trusted again.
    #[error("shard {shard_id} failed an earlier verification and is no longer trusted: release it and seal the model again")]
    Compromised {
        /// The shard (validated id).
        shard_id: String,
    },

    /// A tensor was asked of a shard that does not hold a valid safetensors
    /// or GGUF file (or the file's header is hostile: offsets out of bounds
    /// or overlapping, an unknown dtype, a shape that does not match its
    /// bytes).
    #[error("shard {shard_id} does not hold a usable safetensors file or a GGUF file: {reason}")]
    NotSafetensors {
        /// The shard (validated id).
        shard_id: String,
        /// What is wrong with it (untrusted names escaped).
        reason: String,
    },

    /// The shard's safetensors file has no tensor of that name.
    #[error("shard {shard_id} has no tensor named {name}")]
    UnknownTensor {
        /// The shard (validated id).
        shard_id: String,
        /// The name asked for, escaped and cut to 128 characters.
        name: String,
    },

    /// A verification policy that cannot be run as asked (a sample of 0 leaves).
    #[error("verification policy {policy} refused: {reason}")]
    InvalidPolicy {
        /// The policy asked for.
        policy: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A snapshot directory or sealed model is not one model: no weights, a
    /// bad `model.safetensors.index.json`, a tensor in two shards.
    #[error("model {model}: {reason}")]
    InvalidModel {
        /// The model (its reference or directory, escaped).
        model: String,
        /// What is wrong, in our words (names escaped).
        reason: String,
    },

    /// Sealing one weights file of a snapshot failed; `source` says how
    /// (its class is this error's class).
    #[error("{file}: {source}")]
    InModelFile {
        /// The file's name in the snapshot, escaped.
        file: String,
        /// What went wrong with it.
        source: Box<VramError>,
    },

    /// A small file was asked of a sealed model that did not bind it.
    #[error("the model has no bound file named {name}")]
    UnknownModelFile {
        /// The name asked for, escaped.
        name: String,
    },

    /// A small file bound to a sealed model (config, tokenizer) is no longer
    /// what was sealed.
    #[error("{name} changed since the model was sealed: sealed {bytes} bytes with SHA-256 {sha256}, found {found_bytes} bytes with SHA-256 {found_sha256}; seal the model again")]
    ModelFileChanged {
        /// The file's name in the snapshot, escaped.
        name: String,
        /// Its length when sealed.
        bytes: u64,
        /// Its SHA-256 when sealed.
        sha256: String,
        /// Its length now.
        found_bytes: u64,
        /// Its SHA-256 now.
        found_sha256: String,
    },

    /// A file of a model directory was refused: a small file that does not
    /// match the digest its hub blob is named by, a link that leads outside
    /// the model directory, or something other than a regular file (a FIFO
    /// put in a file's place).
    #[error("{reason}")]
    ModelFileRejected {
        /// The file's name in the snapshot, escaped.
        name: String,
        /// Why, in our words (names escaped).
        reason: String,
    },

    /// A sealed model's binding tag does not verify: its list of shards or
    /// files was altered in memory, or it was sealed under another key.
    #[error("the binding of model {model} is invalid: its shards or files were altered, or it was sealed under another key")]
    ModelBindingInvalid {
        /// The model (escaped).
        model: String,
    },

    /// A shard set is malformed (positions missing, duplicated or inconsistent).
    #[error("invalid shard set: {reason}")]
    InvalidShardSet {
        /// What is wrong.
        reason: String,
    },

    /// A bug in this library (a worker thread panicked); the operation was
    /// abandoned and released everything it held.
    #[error("internal error: {reason}; the operation was abandoned (please report this)")]
    Internal {
        /// What failed.
        reason: &'static str,
    },

    /// A shared lease's handle was used after the lease ended (its request
    /// is over): take a new lease.
    #[error("lease on shard {shard_id} has ended; take a new lease for this request")]
    LeaseEnded {
        /// The shard (validated id).
        shard_id: String,
    },

    /// The audit trail could not record an event and the failure policy is fail-closed.
    #[error("audit trail unavailable, operation refused: {0}")]
    Audit(#[from] vram_audit::AuditError),

    /// A cryptographic primitive failed (self-test, key length).
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] vram_crypto::CryptoError),

    /// Secrets could not be loaded or derived.
    #[error("secrets: {0}")]
    Secrets(#[from] vram_secrets::SecretsError),
}

fn in_tensors(tensors: &[String]) -> String {
    if tensors.is_empty() {
        String::new()
    } else {
        format!(" (in {})", tensors.join("; "))
    }
}

fn first_range(ranges: &[CorruptRange]) -> String {
    ranges
        .first()
        .map_or_else(|| "?".to_string(), |r| format!("{}..{}", r.start, r.end))
}

impl VramError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InModelFile { source, .. } => source.class(),
            Self::InsufficientVram { .. } | Self::AllocationFailed { .. } => ErrorClass::Retriable,
            Self::SealInvalid { .. }
            | Self::IntegrityViolation { .. }
            | Self::Compromised { .. }
            | Self::Internal { .. }
            | Self::PolicyViolation(_)
            | Self::DigestMismatch { .. }
            | Self::UploadMismatch { .. }
            | Self::ModelFileChanged { .. }
            | Self::ModelFileRejected { .. }
            | Self::ModelBindingInvalid { .. }
            | Self::Crypto(_) => ErrorClass::Fatal,
            Self::InvalidInput(_)
            | Self::InvalidConfig { .. }
            | Self::UnknownDevice { .. }
            | Self::KeyMismatch { .. }
            | Self::WrongDevice { .. }
            | Self::WrongWorker { .. }
            | Self::UnboundHandle { .. }
            | Self::InvalidPolicy { .. }
            | Self::NotSafetensors { .. }
            | Self::UnknownTensor { .. }
            | Self::LeaseEnded { .. }
            | Self::InvalidModel { .. }
            | Self::UnknownModelFile { .. }
            | Self::InvalidShardSet { .. } => ErrorClass::InvalidInput,
            Self::Device { .. }
            | Self::Io { .. }
            | Self::LengthMismatch { .. }
            | Self::Audit(_)
            | Self::Secrets(_) => ErrorClass::Environment,
        }
    }

    /// Whether retrying later may succeed (insufficient VRAM, allocation failure).
    pub fn is_retriable(&self) -> bool {
        self.class() == ErrorClass::Retriable
    }

    /// Whether the shard or request must not be used (seal, integrity or policy failure).
    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// Corrupt byte ranges, for an integrity violation.
    pub fn corrupt_ranges(&self) -> &[CorruptRange] {
        match self {
            Self::IntegrityViolation { corrupt, .. } => corrupt,
            Self::InModelFile { source, .. } => source.corrupt_ranges(),
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_fatal_and_ask_to_be_reported() {
        let e = VramError::Internal {
            reason: "a leaf hashing thread panicked",
        };
        assert_eq!(e.class(), ErrorClass::Fatal);
        assert!(e.to_string().contains("please report this"));
        assert!(e.corrupt_ranges().is_empty());
    }
}
