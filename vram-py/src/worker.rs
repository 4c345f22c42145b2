//! Every call this package makes into the Rust crates, in one module: the
//! worker (device, secret, audit log, manager), seals, verifications,
//! leases, tensor tables, the scrubber and the audit verifier. The Python
//! classes (`lib.rs`) hold the types defined here and know nothing else of
//! the facade.
//!
//! The worker is built by `vram-worker`, as `vram seal`, `vram-embed` and
//! `vram-serve` build theirs, so that all of them treat devices, secrets and
//! audit logs alike; errors carry the CLI's exit code (integrity 1, usage 2,
//! environment 3).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use vram_audit::{AuditKey, AuditSigner, VerifyOptions};
use vram_worker::{
    DeviceSpec, ModelLocation, SecretChoice, SecretSource, StandardInput, WorkerError,
    WorkerOptions,
};

const INTEGRITY: u8 = 1;
const USAGE: u8 = 2;
const ENVIRONMENT: u8 = 3;
pub(crate) use vram_residency::ScrubStats;
pub(crate) use vram_residency::{DeviceMemory, Dtype};
use vram_residency::{
    LeafSize, LeaseHandle, LeasePolicy, ModelRef, ScrubConfig, Scrubber as RustScrubber,
    SealedModel, SealedShard, SharedLease, SharedModelLease, TensorMemory, VerifyPolicy,
    VerifyReport, VramError, WorkerSecret,
};

/// An error with the class and exit code the `vram` command gives it.
#[derive(Debug)]
pub(crate) struct Failure {
    /// 1 (integrity), 2 (usage) or 3 (environment).
    pub(crate) code: u8,
    /// One line, with no key, address or raw untrusted input.
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: USAGE,
            message: message.into(),
        }
    }
    pub(crate) fn env(message: impl Into<String>) -> Self {
        Self {
            code: ENVIRONMENT,
            message: message.into(),
        }
    }
    fn integrity(message: impl Into<String>) -> Self {
        Self {
            code: INTEGRITY,
            message: message.into(),
        }
    }
}

impl From<WorkerError> for Failure {
    fn from(e: WorkerError) -> Self {
        Self {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<VramError> for Failure {
    fn from(e: VramError) -> Self {
        WorkerError::from(e).into()
    }
}

/// The operator's secret: a file named here, else where `vram` finds one
/// (the systemd credential, `$VRAM_SECRET_FILE`); never standard input.
fn secret_source(secret_file: Option<PathBuf>) -> SecretSource {
    SecretSource {
        file: secret_file,
        standard_input: StandardInput::Refused,
    }
}

/// Loads the worker secret as `vram audit verify` does.
fn load_secret(secret_file: Option<&Path>) -> Result<WorkerSecret, Failure> {
    Ok(secret_source(secret_file.map(Path::to_path_buf)).load()?)
}

/// A manager over the selected device, with its audit log.
pub(crate) struct Worker(vram_worker::Worker);

impl Worker {
    /// Builds a worker as `vram seal` does (`device`: `auto`, `mock`,
    /// `cuda`, `cuda:N`; `leaf_size` as `vram seal --leaf-size`, `None` for
    /// 64 KiB, the servers' leaf size, on every device). Without a secret, an ephemeral one only when
    /// `ephemeral_secret` allows it.
    pub(crate) fn open(
        device: &str,
        secret_file: Option<PathBuf>,
        audit_log: Option<PathBuf>,
        ephemeral_secret: bool,
        leaf_size: Option<u64>,
    ) -> Result<Self, Failure> {
        let leaf = leaf_size
            .map(|bytes| {
                LeafSize::new(bytes).map_err(|e| Failure::usage(format!("leaf_size: {e}")))
            })
            .transpose()?;
        if ephemeral_secret && secret_file.is_some() {
            return Err(Failure::usage(
                "ephemeral_secret=True and secret_file: give one or the other",
            ));
        }
        let secret = if ephemeral_secret {
            if audit_log.is_some() {
                // A log keyed by a secret that dies with the process could
                // never be verified.
                return Err(WorkerError::AuditNeedsSecret.into());
            }
            SecretChoice::Ephemeral
        } else {
            let source = secret_source(secret_file);
            if !source.is_configured() {
                return Err(Failure::env(format!(
                    "no worker secret: pass secret_file=PATH, set {}, run under systemd with \
                     credential `{}`, or pass ephemeral_secret=True (seals then hold for this \
                     process only); create one with: head -c 32 /dev/urandom > secret && chmod 600 secret",
                    vram_worker::SECRET_FILE_ENV,
                    vram_worker::CREDENTIAL_NAME
                )));
            }
            SecretChoice::Operator(source)
        };
        let options = WorkerOptions {
            device: DeviceSpec::parse(device)?,
            secret,
            audit_log,
            quiet: true,
        };
        // A Python worker serves requests as vram-serve does: 64 KiB leaves
        // on every device unless told.
        Ok(Self(vram_worker::Worker::open_with_leaf_size(
            &options,
            Some(leaf.unwrap_or(vram_worker::SERVING_LEAF_SIZE)),
        )?))
    }

    /// `mock` or `cuda`.
    pub(crate) fn device_kind(&self) -> &'static str {
        self.0.device_kind()
    }

    /// Bytes sealed on the device in use (all shards alive, those kept
    /// alive by leases and arrays included).
    pub(crate) fn used_bytes(&self, device: u32) -> u64 {
        self.0.manager().used_vram(device)
    }

    /// Seals one weights file (safetensors or GGUF) as one shard.
    pub(crate) fn seal_file(&self, path: &Path) -> Result<Sealed, Failure> {
        // `file:NAME`, as `vram seal FILE` names it.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let model_ref = ModelRef::new(&format!("file:{name}"))
            .or_else(|_| ModelRef::new("model"))
            .map_err(|e| Failure::usage(e.to_string()))?;
        let location = ModelLocation::file(path, model_ref);
        Ok(Sealed::Shard(Arc::new(self.0.seal(&location)?)))
    }

    /// Seals a snapshot directory, or `hf://ORG/NAME[@REV]` from the local
    /// hub cache (with the digests its blob names promise), as one model.
    pub(crate) fn seal_snapshot(&self, model: &str) -> Result<Sealed, Failure> {
        let location = vram_worker::locate(model, true)?;
        Ok(Sealed::Model(Arc::new(self.0.seal_snapshot(&location)?)))
    }

    /// Verifies every shard of `sealed` under `policy` (`full`,
    /// `sampled:K`), after the model's binding.
    pub(crate) fn verify(&self, sealed: &Sealed, policy: &str) -> Result<Cost, Failure> {
        let policy = match policy.parse::<LeasePolicy>() {
            Ok(LeasePolicy::Full) => VerifyPolicy::Full,
            Ok(LeasePolicy::Sampled { leaves }) => VerifyPolicy::Sampled { leaves },
            _ => {
                return Err(Failure::usage(format!(
                    "policy: `full` or `sampled:K` (got `{}`)",
                    vram_validation::escape_for_log(policy, 40)
                )))
            }
        };
        let manager = self.0.manager();
        let reports = match sealed {
            Sealed::Shard(shard) => vec![manager.verify_with(shard, policy)?],
            Sealed::Model(model) => {
                manager.check_model(model)?;
                model
                    .shards()
                    .iter()
                    .map(|s| manager.verify_with(s, policy))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(Cost::of(reports.iter()))
    }

    /// A verified lease on `sealed` under `policy` (`full`, `sampled:K`,
    /// `recent:SECONDS:K`).
    pub(crate) fn lease(&self, sealed: &Sealed, policy: &str) -> Result<Leased, Failure> {
        let policy: LeasePolicy = policy.parse().map_err(|e| {
            Failure::usage(format!(
                "policy: {e} (got `{}`)",
                vram_validation::escape_for_log(policy, 40)
            ))
        })?;
        let manager = self.0.manager();
        Ok(match sealed {
            Sealed::Shard(shard) => Leased::Shard(manager.lease_shared(shard, policy)?),
            Sealed::Model(model) => Leased::Model(manager.lease_model_shared(model, policy)?),
        })
    }

    /// Starts the background scrubber over `sealed`'s shards.
    pub(crate) fn start_scrubber(
        &self,
        sealed: &Sealed,
        bytes_per_second: u64,
    ) -> Result<Scrubber, Failure> {
        let shards = match sealed {
            Sealed::Shard(shard) => vec![Arc::clone(shard)],
            Sealed::Model(model) => model.shards().to_vec(),
        };
        let scrubber = RustScrubber::start(
            self.0.manager(),
            &shards,
            ScrubConfig::new(bytes_per_second),
        )?;
        Ok(Scrubber(Mutex::new(ScrubState::Running(scrubber))))
    }

    /// Flips bits (`mask`) of one byte of the most recent allocation behind
    /// the seal's back: the test hook `vram demo` uses (the mock only).
    #[cfg(feature = "test-corruption")]
    pub(crate) fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), Failure> {
        Ok(self.0.corrupt_latest(offset, mask)?)
    }
}

/// A sealed model (a snapshot) or a sealed file (one shard).
#[derive(Clone)]
pub(crate) enum Sealed {
    Model(Arc<SealedModel>),
    Shard(Arc<SealedShard>),
}

impl Sealed {
    /// The model reference recorded in the seals.
    pub(crate) fn model_ref(&self) -> String {
        match self {
            Self::Model(m) => m.model_ref().to_string(),
            Self::Shard(s) => s.model_ref().to_string(),
        }
    }

    /// Bytes in device memory.
    pub(crate) fn vram_bytes(&self) -> u64 {
        match self {
            Self::Model(m) => m.vram_bytes(),
            Self::Shard(s) => s.vram_bytes(),
        }
    }

    fn shards(&self) -> Vec<&SealedShard> {
        match self {
            Self::Model(m) => m.shards().iter().map(AsRef::as_ref).collect(),
            Self::Shard(s) => vec![s.as_ref()],
        }
    }

    /// The device index the model lies on.
    pub(crate) fn gpu_device(&self) -> u32 {
        self.shards().first().map_or(0, |s| s.gpu_device())
    }

    /// Whether a verification has found it wrong (one way).
    pub(crate) fn is_compromised(&self) -> bool {
        self.shards().iter().any(|s| s.is_compromised())
    }

    /// Each shard's handle (every sealed field and the tag, no address), as
    /// JSON, the form an API hands to its clients.
    pub(crate) fn handles_json(&self) -> Result<String, Failure> {
        let handles: Vec<_> = self.shards().iter().map(|s| s.handle()).collect();
        serde_json::to_string(&handles).map_err(|e| Failure::env(format!("handles: {e}")))
    }

    /// Releases the model: its device memory is freed now, or when the last
    /// lease or array that holds a shard lets go of it.
    pub(crate) fn release(self) -> Result<(), Failure> {
        match self {
            Self::Model(m) => match Arc::try_unwrap(m) {
                Ok(model) => Ok(model.release()?),
                Err(_held) => Ok(()),
            },
            Self::Shard(s) => match Arc::try_unwrap(s) {
                Ok(shard) => Ok(shard.release()?),
                Err(_held) => Ok(()),
            },
        }
    }
}

/// What a verification cost: leaves re-read, bytes hashed, time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    pub(crate) leaves: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
}

impl Cost {
    fn of<'a>(reports: impl Iterator<Item = &'a VerifyReport>) -> Self {
        reports.fold(
            Self {
                leaves: 0,
                bytes: 0,
                elapsed: Duration::ZERO,
            },
            |c, r| Self {
                leaves: c.leaves.saturating_add(r.leaves_checked),
                bytes: c.bytes.saturating_add(r.bytes_checked),
                elapsed: c.elapsed.saturating_add(r.elapsed),
            },
        )
    }
}

/// A verified lease that owns what it leases.
pub(crate) enum Leased {
    Model(SharedModelLease),
    Shard(SharedLease),
}

/// One tensor of a lease: what the table says, and the handle that reads it.
pub(crate) struct TensorEntry {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<u64>,
    /// Whether the tensor comes from a GGUF file (its shape is then in
    /// ggml's order, the innermost dimension first).
    pub(crate) gguf: bool,
    pub(crate) handle: TensorHandle,
}

/// One shard's tensors as host memory: each tensor's place, valid while
/// the lease it was read through is open.
pub(crate) struct ShardViews {
    pub(crate) tensors: Vec<HostView>,
}

/// One tensor's bytes in host memory, with its view shape (row-major: a
/// GGUF tensor's dimensions reversed).
pub(crate) struct HostView {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<u64>,
    pub(crate) address: usize,
    pub(crate) len: usize,
}

/// A tensor's way to its bytes: its shard's lease handle and its name.
#[derive(Clone)]
pub(crate) struct TensorHandle {
    lease: LeaseHandle,
    name: String,
}

/// Where a tensor's bytes lie: host memory of this process (the mock) or
/// device memory (CUDA). The addresses are only valid while what the
/// [`TensorRegion`] keeps is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Host memory: the first byte's address and the length.
    Host { address: usize, len: usize },
    /// CUDA device memory: a device pointer (`CUdeviceptr`), the length, and
    /// the device's ordinal.
    Device {
        address: u64,
        len: u64,
        ordinal: u32,
    },
}

impl Place {
    /// The place of a facade [`DeviceMemory`] range.
    pub(crate) fn of_device_memory(memory: DeviceMemory) -> Self {
        Self::Device {
            address: memory.address(),
            len: memory.len(),
            ordinal: memory.device(),
        }
    }
}

/// Where a tensor's bytes lie, with what keeps them there.
pub(crate) struct TensorRegion {
    /// The shard's lease handle: holds the shard (and so its memory) alive.
    keep: LeaseHandle,
    pub(crate) place: Place,
}

impl TensorRegion {
    /// Splits the region into its place and what keeps it valid, as an
    /// opaque owner: the place stays valid until the owner is dropped.
    pub(crate) fn into_parts(self) -> (Place, Box<dyn Send>) {
        (self.place, Box::new(self.keep))
    }
}

/// Where a tensor's bytes lie in this process, with what keeps them there.
pub(crate) struct HostRegion {
    /// The shard's lease handle: holds the shard (and so its memory) alive.
    keep: LeaseHandle,
    pub(crate) address: usize,
    pub(crate) len: usize,
}

impl HostRegion {
    /// Whether the lease the region was read through is still open.
    pub(crate) fn lease_open(&self) -> bool {
        self.keep.is_open()
    }
}

impl TensorHandle {
    /// Whether its lease is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.lease.is_open()
    }

    /// Where the tensor's bytes lie, read through the open lease, kept
    /// valid by the shard's lease handle. On the mock the address stays
    /// valid for as long as the shard lives (its memory is a map that never
    /// moves while its buffer lives); on CUDA the device allocation is freed
    /// only when the shard's buffer drops, and the facade's `memory()`
    /// waited for the work queued on the buffer's stream before handing out
    /// the address.
    pub(crate) fn region(&self) -> Result<TensorRegion, Failure> {
        let place = self.lease.with_tensors(|t| -> Result<_, Failure> {
            Ok(match t.get(&self.name)?.memory() {
                TensorMemory::Host(bytes) => Place::Host {
                    address: bytes.as_ptr() as usize,
                    len: bytes.len(),
                },
                TensorMemory::Device(memory) => Place::of_device_memory(memory),
                _ => {
                    return Err(Failure::env(format!(
                        "tensor {}: its memory is of a kind this package cannot view",
                        vram_validation::escape_for_log(&self.name, 128)
                    )))
                }
            })
        })??;
        Ok(TensorRegion {
            keep: self.lease.clone(),
            place,
        })
    }

    /// Where the tensor's bytes lie in host memory (the mock), read through
    /// the open lease; a usage error for GPU memory, which NumPy cannot read.
    pub(crate) fn host_region(&self) -> Result<HostRegion, Failure> {
        let region = self.region()?;
        match region.place {
            Place::Host { address, len } => Ok(HostRegion {
                keep: region.keep,
                address,
                len,
            }),
            Place::Device { .. } => Err(Failure::usage(format!(
                "tensor {}: its bytes are in GPU memory, which NumPy cannot read \
                 (use DLPack: torch.from_dlpack(tensor))",
                vram_validation::escape_for_log(&self.name, 128)
            ))),
        }
    }
}

impl Leased {
    fn handles(&self) -> Vec<LeaseHandle> {
        match self {
            Self::Model(l) => l.handles().to_vec(),
            Self::Shard(l) => vec![l.handle()],
        }
    }

    /// Whether the lease is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.handles().iter().all(LeaseHandle::is_open)
    }

    /// Each leased shard's whole memory, in host memory (the mock), read
    /// through the open lease and kept valid by the shard's lease handle;
    /// a usage error on a device NumPy cannot read (CUDA).
    pub(crate) fn shard_regions(&self) -> Result<Vec<HostRegion>, Failure> {
        self.handles()
            .into_iter()
            .map(|handle| {
                let place = handle.with_memory(|m| match m {
                    vram_residency::MemoryAccess::Host(bytes) => {
                        Some((bytes.as_ptr() as usize, bytes.len()))
                    }
                    _ => None,
                })?;
                let (address, len) = place.ok_or_else(|| {
                    Failure::usage(
                        "the model's bytes are in GPU memory, which NumPy cannot read (use \
                         DLPack: torch.from_dlpack(tensor))",
                    )
                })?;
                Ok(HostRegion {
                    keep: handle,
                    address,
                    len,
                })
            })
            .collect()
    }

    /// Every tensor of the lease with where its bytes lie in host memory,
    /// shard by shard, read in one pass per shard: what `Lease.arrays()`
    /// plans its NumPy views from. A usage error on a device NumPy cannot
    /// read (CUDA).
    pub(crate) fn host_views(&self) -> Result<Vec<ShardViews>, Failure> {
        let mut out = Vec::new();
        for handle in self.handles() {
            let views = handle.with_tensors(|t| -> Result<ShardViews, Failure> {
                let gguf = t.gguf().is_some();
                let mut tensors = Vec::new();
                for name in t.names() {
                    let v = t.get(name)?;
                    let Some(bytes) = v.host_bytes() else {
                        return Err(Failure::usage(format!(
                            "tensor {}: its bytes are in GPU memory, which NumPy cannot read \
                             (use DLPack: torch.from_dlpack(tensor))",
                            vram_validation::escape_for_log(name, 128)
                        )));
                    };
                    let mut shape = v.shape().to_vec();
                    if gguf {
                        shape.reverse();
                    }
                    tensors.push(HostView {
                        name: name.to_owned(),
                        dtype: v.element_type(),
                        shape,
                        address: bytes.as_ptr() as usize,
                        len: bytes.len(),
                    });
                }
                Ok(ShardViews { tensors })
            })??;
            out.push(views);
        }
        Ok(out)
    }

    /// Every tensor of every leased shard, in shard then file order.
    pub(crate) fn tensors(&self) -> Result<Vec<TensorEntry>, Failure> {
        let mut out = Vec::new();
        for handle in self.handles() {
            let entries = handle.with_tensors(|t| {
                t.names()
                    .map(|name| {
                        t.get(name).map(|v| TensorEntry {
                            name: v.name().to_owned(),
                            dtype: v.element_type(),
                            shape: v.shape().to_vec(),
                            gguf: t.gguf().is_some(),
                            handle: TensorHandle {
                                lease: handle.clone(),
                                name: v.name().to_owned(),
                            },
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })??;
            out.extend(entries);
        }
        Ok(out)
    }

    /// What was verified before the lease was granted.
    pub(crate) fn cost(&self) -> Cost {
        match self {
            Self::Model(l) => {
                let (leaves, bytes, elapsed) = l.verification_cost();
                Cost {
                    leaves,
                    bytes,
                    elapsed,
                }
            }
            Self::Shard(l) => Cost::of(std::iter::once(l.verification())),
        }
    }

    /// Ends the lease: every later read through it fails.
    pub(crate) fn end(&self) {
        match self {
            Self::Model(l) => l.end(),
            Self::Shard(l) => l.end(),
        }
    }
}

/// A background scrubber, running or stopped (with its final figures).
pub(crate) struct Scrubber(Mutex<ScrubState>);

enum ScrubState {
    Running(RustScrubber),
    Stopped(ScrubStats),
}

impl Scrubber {
    /// Progress so far (the final figures once stopped).
    pub(crate) fn stats(&self) -> ScrubStats {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            ScrubState::Running(s) => s.stats(),
            ScrubState::Stopped(stats) => *stats,
        }
    }

    /// Stops the scrubber and waits for its thread (a second call returns
    /// the same figures).
    pub(crate) fn stop(&self) -> ScrubStats {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stopped = ScrubState::Stopped(ScrubStats::default());
        let stats = match std::mem::replace(&mut *state, stopped) {
            ScrubState::Running(s) => s.stop(),
            ScrubState::Stopped(stats) => stats,
        };
        *state = ScrubState::Stopped(stats);
        stats
    }
}

/// An audit log's verdict: intact, with its record count and head.
pub(crate) struct AuditVerdict {
    pub(crate) records: u64,
    pub(crate) files: usize,
    pub(crate) head: Option<String>,
    pub(crate) log_id: Option<String>,
}

/// Verifies an audit log (and its rotated segments) with the key derived
/// from the worker secret, as `vram audit verify --secret-file` does.
/// Findings are an integrity failure naming the first of them.
pub(crate) fn audit_verify(
    path: &Path,
    secret_file: Option<&Path>,
) -> Result<AuditVerdict, Failure> {
    let secret = load_secret(secret_file)?;
    let signer = AuditSigner::from_seed(&secret.audit_signing_seed())
        .map_err(|e| Failure::env(format!("audit signing key: {e}")))?;
    let key = AuditKey::from_secret(&secret.audit_key()).with_signer(signer);
    let files = vram_audit::segment_files(path).map_err(|e| Failure::env(e.to_string()))?;
    let report = vram_audit::verify_chain_with(&files, &key, &VerifyOptions::default())
        .map_err(|e| Failure::env(format!("audit verify: {e}")))?;
    if !report.is_intact() {
        let first: Vec<String> = report
            .findings
            .iter()
            .take(3)
            .map(ToString::to_string)
            .collect();
        return Err(Failure::integrity(format!(
            "audit log has {} finding(s): {}",
            report.findings_total,
            first.join("; ")
        )));
    }
    Ok(AuditVerdict {
        records: report.records,
        files: report.files,
        head: report.head.as_ref().map(ToString::to_string),
        log_id: report.log_id,
    })
}
