//! A model as an engine loads it: a Hugging Face snapshot directory's
//! weights (a single `model.safetensors`, or the shards its
//! `model.safetensors.index.json` names) sealed in device memory as one set,
//! and the small files that change what the model computes (config,
//! tokenizer, sentence-transformers modules) bound to those seals on the
//! host by one more tag under the seal key (docs/formats.md, "Model
//! binding").
//!
//! [`VramManager::seal_model`](crate::VramManager::seal_model) seals
//! one; [`VramManager::lease_model`](crate::VramManager::lease_model)
//! verifies it before a request and gives its tensors, by name, across
//! shards; [`VramManager::model_file`](crate::VramManager::model_file) gives
//! a small file's bytes only after checking them against the binding.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vram_crypto::{BoundFile, BoundShard, ModelBinding, SealTag, Sha256Digest};
use vram_validation::{escape_for_log, ModelRef, Sha256Hex};

use crate::lease::{Lease, LeasePolicy};
use crate::request::SealSource;
use crate::tensors::{TensorView, Tensors};
use crate::{SealedShard, VerifyReport, VramError};
use vram_audit::AuditEvent;

/// Largest small file bound to a model (a large multilingual tokenizer is
/// about 20 MB).
pub const MAX_BOUND_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What to seal: a snapshot directory, under one model reference, on one
/// device.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The snapshot directory (links are followed, as a hub cache's
    /// snapshot is made of links into its blobs).
    pub dir: PathBuf,
    /// The model's reference, recorded in every shard's seal and the
    /// binding (`hf://ORG/NAME@COMMIT`, a path).
    pub model_ref: ModelRef,
    /// The device the weights go to.
    pub gpu_device: u32,
    /// The SHA-256 a weights file must have, by its name in the snapshot
    /// (a hub cache's blob names); checked in the pass that seals it.
    pub expected_sha256: BTreeMap<String, Sha256Hex>,
    /// The digest a small file must have, by its name in the snapshot (a
    /// hub cache's blob names: a git blob id, or a SHA-256 for a file kept
    /// in Git LFS); checked in the one read that hashes it for the binding,
    /// so the bytes bound are the bytes checked.
    pub expected_files: BTreeMap<String, vram_hub::Expected>,
    /// Which files of `dir` are the model, when the directory holds more
    /// than one (a split GGUF model's parts beside other quantizations:
    /// [`vram_hub::ModelLayout::of_gguf_parts`]); `None` reads the
    /// directory's own layout ([`vram_hub::ModelLayout::of_dir`]). Each name
    /// is opened in `dir` as the layout's are (no link out of it).
    pub layout: Option<vram_hub::ModelLayout>,
}

impl SnapshotRequest {
    /// A request for the snapshot at `dir` on `gpu_device`, no expected digests.
    pub fn new(dir: impl Into<PathBuf>, model_ref: ModelRef, gpu_device: u32) -> Self {
        Self {
            dir: dir.into(),
            model_ref,
            gpu_device,
            expected_sha256: BTreeMap::new(),
            expected_files: BTreeMap::new(),
            layout: None,
        }
    }
}

impl crate::VramManager {
    /// Seals a snapshot directory as one model: its weights (a single
    /// `model.safetensors`, or the shards `model.safetensors.index.json`
    /// names, those and only those; see [`vram_hub::ModelLayout`]) on the
    /// request's device as one set (positions `0..n` in file-name order, one
    /// set id), each by [`VramManager::seal`](crate::VramManager::seal) from the file and with its
    /// expected SHA-256 when the request has one; and its small inference
    /// files (config, tokenizer, sentence-transformers modules, the index)
    /// hashed on the host and bound to the shards' seals by one tag under
    /// the seal key.
    ///
    /// The small files are hashed and every weights file opened before any
    /// device work; if any shard fails, those sealed before it are released
    /// (audited).
    ///
    /// # Errors
    /// [`VramError::InvalidModel`] when the directory is not one model (no
    /// weights, a bad index, an expected digest for a file that is not part
    /// of the model); [`VramError::Io`]; any seal error.
    pub fn seal_model(&self, request: &SnapshotRequest) -> Result<SealedModel, VramError> {
        let layout = match &request.layout {
            Some(given) => given.clone(),
            None => layout(&request.dir)?,
        };
        if let Some(extra) = request
            .expected_sha256
            .keys()
            .find(|name| !layout.weights.contains(name))
        {
            return Err(VramError::InvalidModel {
                model: escape_for_log(request.model_ref.as_str(), 200),
                reason: format!(
                    "a SHA-256 is expected for {}, which is not one of its weights files",
                    escape_for_log(extra, 200)
                ),
            });
        }
        if let Some(extra) = request
            .expected_files
            .keys()
            .find(|name| !layout.inference_files.contains(name))
        {
            return Err(VramError::InvalidModel {
                model: escape_for_log(request.model_ref.as_str(), 200),
                reason: format!(
                    "a digest is expected for {}, which is not one of the files it binds",
                    escape_for_log(extra, 200)
                ),
            });
        }
        let files = hash_files(
            &request.dir,
            &layout.inference_files,
            &request.expected_files,
        )?;
        let weights = layout
            .weights
            .iter()
            .map(|name| open_file(&request.dir, name, None).map(|f| f.file))
            .collect::<Result<Vec<_>, _>>()?;
        let devices = vec![request.gpu_device; weights.len()];
        let requests = crate::set::part_requests(&request.model_ref, weights.len(), &devices)?;
        let mut shards = Vec::with_capacity(weights.len());
        let mut seal_times = Vec::with_capacity(weights.len());
        for ((mut part, file), name) in requests.into_iter().zip(&weights).zip(&layout.weights) {
            part.expected_sha256 = request.expected_sha256.get(name).cloned();
            // Each shard's seal and audit record name its file:
            // `MODEL_REF/FILE` (the binding names the model).
            part.model_ref = ModelRef::new(&format!("{}/{name}", request.model_ref.as_str()))
                .map_err(|e| VramError::InModelFile {
                    file: escape_for_log(name, 200),
                    source: Box::new(e.into()),
                })?;
            let t0 = std::time::Instant::now();
            // On error, `shards` drops here and releases every earlier part.
            let shard =
                self.seal(&part, SealSource::file(file))
                    .map_err(|e| VramError::InModelFile {
                        file: escape_for_log(name, 200),
                        source: Box::new(e),
                    })?;
            seal_times.push(t0.elapsed());
            shards.push(shard);
        }
        tracing::info!(
            model = %request.model_ref.as_str(),
            shards = shards.len(),
            files = files.len(),
            "snapshot sealed"
        );
        let key_id = *self.sealer().key_id().as_bytes();
        let model = assemble(
            request,
            shards,
            seal_times,
            layout.weights,
            files,
            key_id,
            |b| self.sealer().sign_model(b),
        )?;
        // Which small files were bound, with their bytes: on error the
        // model drops here and every shard is released (audited).
        self.trail().record(AuditEvent::ModelBound {
            model: model.model_ref().to_string(),
            shards: model
                .shards()
                .iter()
                .map(|s| s.shard_id().to_string())
                .collect(),
            files: model
                .files()
                .iter()
                .map(|f| vram_audit::BoundFileRecord {
                    name: f.name.clone(),
                    bytes: f.bytes,
                    sha256: f.sha256.to_string(),
                })
                .collect(),
            key_id: self.sealer().key_id().to_string(),
        })?;
        Ok(model)
    }

    /// Checks a sealed model's binding: its shards and small files are the
    /// ones sealed together, under this manager's key.
    ///
    /// # Errors
    /// [`VramError::ModelBindingInvalid`] when they are not.
    pub fn check_model(&self, model: &SealedModel) -> Result<(), VramError> {
        let key_id = *self.sealer().key_id().as_bytes();
        let tag = model.binding_tag();
        if model.with_binding(key_id, |b| self.sealer().is_authentic_model(b, tag)) {
            Ok(())
        } else {
            Err(VramError::ModelBindingInvalid {
                model: escape_for_log(model.model_ref().as_str(), 200),
            })
        }
    }

    /// A small file of a sealed model (`tokenizer.json`), read from its
    /// snapshot directory and returned only if the binding holds and the
    /// bytes are the ones sealed (length and SHA-256): what an engine builds
    /// its tokenizer and configuration from.
    ///
    /// # Errors
    /// [`VramError::ModelBindingInvalid`]; [`VramError::UnknownModelFile`]
    /// for a file that is not bound; [`VramError::ModelFileChanged`] (fatal)
    /// when the file is no longer what was sealed; [`VramError::Io`].
    pub fn model_file(&self, model: &SealedModel, name: &str) -> Result<Vec<u8>, VramError> {
        let read = self
            .check_model(model)
            .and_then(|()| read_bound(model, name));
        if let Err(e) = &read {
            if e.is_fatal() {
                // The refusal is what the caller must see; an audit failure
                // on top of it is counted and logged, not substituted.
                self.trail().record_secondary(AuditEvent::ModelFileRefused {
                    model: model.model_ref().to_string(),
                    file: escape_for_log(name, 200),
                    reason: e.to_string(),
                });
            }
        }
        read
    }

    /// Leases a whole model: checks its binding, then leases every shard
    /// (see [`VramManager::lease`](crate::VramManager::lease)). A sample of K leaves is drawn over the
    /// whole model (every leaf of every shard equally likely), at least one
    /// per shard. The first refusal refuses the model (audited as that
    /// shard's refusal).
    ///
    /// # Errors
    /// [`VramError::ModelBindingInvalid`]; as [`VramManager::lease`](crate::VramManager::lease).
    pub fn lease_model<'m>(
        &self,
        model: &'m SealedModel,
        policy: LeasePolicy,
    ) -> Result<ModelLease<'m>, VramError> {
        self.check_model(model)?;
        let policies = shard_policies(model, policy)?;
        let leases = model
            .shards()
            .iter()
            .zip(policies)
            .map(|(shard, p)| self.lease(shard, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ModelLease::new(model, leases, policy))
    }
}

/// A small file bound to a model: its name in the snapshot, length and
/// SHA-256 when it was sealed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostFile {
    /// Its name in the snapshot (`tokenizer.json`, `1_Pooling/config.json`).
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
}

/// A snapshot sealed as one model: its weight shards in device memory (one
/// set, positions `0..n`, in the order of [`SealedModel::weight_files`]) and
/// its small files bound on the host.
///
/// Dropping it releases every shard (audited); [`SealedModel::release`]
/// says whether those records reached the log.
pub struct SealedModel {
    model_ref: ModelRef,
    dir: PathBuf,
    shards: Vec<Arc<SealedShard>>,
    weight_files: Vec<String>,
    files: Vec<HostFile>,
    tag: SealTag,
    /// How long each shard's seal took, in position order.
    seal_times: Vec<Duration>,
    /// Tensor name → shard position, built at the first lease that reads
    /// tensors (from the shards' verified headers).
    tensor_index: OnceLock<Result<HashMap<String, usize>, String>>,
}

impl std::fmt::Debug for SealedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedModel")
            .field("model_ref", &self.model_ref.as_str())
            .field("weight_files", &self.weight_files)
            .field("files", &self.files.len())
            .field("binding", &self.tag)
            .finish_non_exhaustive()
    }
}

impl SealedModel {
    /// The model's reference.
    #[must_use]
    pub fn model_ref(&self) -> &ModelRef {
        &self.model_ref
    }

    /// The snapshot directory it was sealed from.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The weight shards, in position order.
    #[must_use]
    pub fn shards(&self) -> &[Arc<SealedShard>] {
        &self.shards
    }

    /// The weights files' names, in position order.
    #[must_use]
    pub fn weight_files(&self) -> &[String] {
        &self.weight_files
    }

    /// The small files bound to the seals.
    #[must_use]
    pub fn files(&self) -> &[HostFile] {
        &self.files
    }

    /// Whether a small file of that name is bound.
    #[must_use]
    pub fn has_file(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name == name)
    }

    /// The binding's tag (covers every shard's seal and every small file).
    #[must_use]
    pub fn binding_tag(&self) -> &SealTag {
        &self.tag
    }

    /// How long each shard's seal took (copy, hash and checks), in
    /// position order.
    #[must_use]
    pub fn shard_seal_times(&self) -> &[Duration] {
        &self.seal_times
    }

    /// Bytes in device memory, all shards.
    #[must_use]
    pub fn vram_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.vram_bytes())
            .fold(0, u64::saturating_add)
    }

    /// Gives the shards back (to hold and scrub them, or release them one by
    /// one); the binding is dropped.
    #[must_use]
    pub fn into_shards(self) -> Vec<Arc<SealedShard>> {
        self.shards
    }

    /// Releases every shard and says whether the releases reached the audit
    /// log (the first failure; every shard is released either way). A shard
    /// someone else still holds (an `Arc` clone) is released when they drop it.
    ///
    /// # Errors
    /// [`VramError::Audit`] when a fail-closed log could not record a release.
    pub fn release(self) -> Result<(), VramError> {
        let mut first = Ok(());
        for shard in self.shards {
            if let Ok(shard) = Arc::try_unwrap(shard) {
                let r = shard.release();
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }

    /// The binding message over this model's seals and files.
    pub(crate) fn with_binding<T>(
        &self,
        key_id: [u8; 8],
        f: impl FnOnce(&ModelBinding<'_>) -> T,
    ) -> T {
        binding_of(
            &self.model_ref,
            &self.weight_files,
            self.shards.iter().map(|s| *s.seal_tag()),
            &self.files,
            key_id,
            f,
        )
    }

    pub(crate) fn tensor_index(&self) -> Result<&HashMap<String, usize>, VramError> {
        let index = self.tensor_index.get_or_init(|| {
            let mut index = HashMap::new();
            for (i, shard) in self.shards.iter().enumerate() {
                let table = shard.tensor_table().map_err(|e| e.to_string())?;
                for name in table.names() {
                    if let Some(other) = index.insert(name.to_owned(), i) {
                        return Err(format!(
                            "tensor {} is in both {} and {}",
                            escape_for_log(name, 128),
                            escape_for_log(
                                self.weight_files.get(other).map_or("?", String::as_str),
                                128
                            ),
                            escape_for_log(
                                self.weight_files.get(i).map_or("?", String::as_str),
                                128
                            ),
                        ));
                    }
                }
            }
            Ok(index)
        });
        index.as_ref().map_err(|reason| VramError::InvalidModel {
            model: escape_for_log(self.model_ref.as_str(), 200),
            reason: reason.clone(),
        })
    }
}

fn binding_of<T>(
    model_ref: &ModelRef,
    weight_files: &[String],
    tags: impl Iterator<Item = SealTag>,
    files: &[HostFile],
    key_id: [u8; 8],
    f: impl FnOnce(&ModelBinding<'_>) -> T,
) -> T {
    let shards: Vec<BoundShard<'_>> = weight_files
        .iter()
        .zip(tags)
        .map(|(name, seal_tag)| BoundShard { name, seal_tag })
        .collect();
    let files: Vec<BoundFile<'_>> = files
        .iter()
        .map(|h| BoundFile {
            name: &h.name,
            len: h.bytes,
            sha256: h.sha256.0,
        })
        .collect();
    f(&ModelBinding {
        model_ref: model_ref.as_str(),
        shards: &shards,
        files: &files,
        key_id,
    })
}

/// Builds a sealed model from its sealed shards and hashed files, signing
/// the binding with `sign`.
pub(crate) fn assemble(
    request: &SnapshotRequest,
    shards: Vec<SealedShard>,
    seal_times: Vec<Duration>,
    weight_files: Vec<String>,
    files: Vec<HostFile>,
    key_id: [u8; 8],
    sign: impl FnOnce(&ModelBinding<'_>) -> Result<SealTag, VramError>,
) -> Result<SealedModel, VramError> {
    let tag = binding_of(
        &request.model_ref,
        &weight_files,
        shards.iter().map(|s| *s.seal_tag()),
        &files,
        key_id,
        sign,
    )?;
    Ok(SealedModel {
        model_ref: request.model_ref.clone(),
        dir: request.dir.clone(),
        shards: shards.into_iter().map(Arc::new).collect(),
        weight_files,
        files,
        tag,
        seal_times,
        tensor_index: OnceLock::new(),
    })
}

/// A snapshot's layout, as [`VramError`].
pub(crate) fn layout(dir: &Path) -> Result<vram_hub::ModelLayout, VramError> {
    vram_hub::ModelLayout::of_dir(dir).map_err(|e| match e {
        vram_hub::HubError::Io { kind, .. } => VramError::Io { kind },
        vram_hub::HubError::Layout { reason, .. } => VramError::InvalidModel {
            model: escape_for_log(&dir.to_string_lossy(), 200),
            reason,
        },
        other => VramError::InvalidModel {
            model: escape_for_log(&dir.to_string_lossy(), 200),
            reason: other.to_string(),
        },
    })
}

/// A model file that could not be opened as one, as [`VramError`]: a link
/// out of the model directory or something other than a regular file is
/// refused (fatal); a file too large is not one model.
fn open_error(dir: &Path, name: &str, e: vram_hub::HubError) -> VramError {
    match e {
        vram_hub::HubError::Io { kind, .. } => VramError::Io { kind },
        vram_hub::HubError::LeavesModel { .. } | vram_hub::HubError::NotRegularFile { .. } => {
            VramError::ModelFileRejected {
                name: escape_for_log(name, 200),
                reason: e.to_string(),
            }
        }
        other => VramError::InvalidModel {
            model: escape_for_log(&dir.to_string_lossy(), 200),
            reason: other.to_string(),
        },
    }
}

/// Opens a file of the model directory (see [`vram_hub::open_model_file`]:
/// links judged by where they lead, `O_NOFOLLOW | O_NONBLOCK`, checked on
/// the descriptor).
pub(crate) fn open_file(
    dir: &Path,
    name: &str,
    max_len: Option<u64>,
) -> Result<vram_hub::ModelFile, VramError> {
    vram_hub::open_model_file(dir, name, max_len).map_err(|e| open_error(dir, name, e))
}

/// Reads a small file whole (at most [`MAX_BOUND_FILE_BYTES`]) from one
/// open descriptor ([`vram_hub::read_model_file`]).
fn read_small(dir: &Path, name: &str) -> Result<Vec<u8>, VramError> {
    vram_hub::read_model_file(dir, name, MAX_BOUND_FILE_BYTES).map_err(|e| open_error(dir, name, e))
}

/// Hashes the small files to bind, each from one read, and checks each that
/// has an expected digest against it in that read: the bytes bound are the
/// bytes checked.
pub(crate) fn hash_files(
    dir: &Path,
    names: &[String],
    expected: &BTreeMap<String, vram_hub::Expected>,
) -> Result<Vec<HostFile>, VramError> {
    names
        .iter()
        .map(|name| {
            let bytes = read_small(dir, name)?;
            if let Some(want) = expected.get(name) {
                if let vram_hub::FileCheck::Corrupt { actual } = want.check_bytes(&bytes) {
                    let shown = escape_for_log(name, 200);
                    return Err(VramError::ModelFileRejected {
                        reason: format!(
                            "{shown} is not the file its hub blob is named by: its {} is {actual}, \
                             the blob is named {}; nothing was sealed",
                            want.algorithm(),
                            want.to_hex()
                        ),
                        name: shown,
                    });
                }
            }
            Ok(HostFile {
                name: name.clone(),
                bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                sha256: vram_crypto::sha256(&bytes),
            })
        })
        .collect()
}

/// Reads a bound file and checks it against its binding entry.
pub(crate) fn read_bound(model: &SealedModel, name: &str) -> Result<Vec<u8>, VramError> {
    let entry =
        model
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| VramError::UnknownModelFile {
                name: escape_for_log(name, 200),
            })?;
    let bytes = read_small(&model.dir, name)?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let sha = vram_crypto::sha256(&bytes);
    if len != entry.bytes || sha != entry.sha256 {
        let e = VramError::ModelFileChanged {
            name: escape_for_log(name, 200),
            bytes: entry.bytes,
            sha256: entry.sha256.to_string(),
            found_bytes: len,
            found_sha256: sha.to_string(),
        };
        tracing::error!(model = %model.model_ref.as_str(), error = %e, "a bound model file changed");
        return Err(e);
    }
    Ok(bytes)
}

/// How many leaves each shard's lease re-reads for `policy`: a sample of K
/// is K leaves drawn uniformly over the whole model (each leaf of every
/// shard equally likely), at least one per shard, so that every shard's
/// lease reads something.
pub(crate) fn shard_policies(
    model: &SealedModel,
    policy: LeasePolicy,
) -> Result<Vec<LeasePolicy>, VramError> {
    let leaves = |s: &SealedShard| u64::try_from(s.leaf_hashes().len()).unwrap_or(u64::MAX);
    let k = match policy {
        LeasePolicy::Full => return Ok(vec![LeasePolicy::Full; model.shards.len()]),
        LeasePolicy::Sampled { leaves } | LeasePolicy::RecentFull { leaves, .. } => leaves,
    };
    let total = model
        .shards
        .iter()
        .map(|s| leaves(s))
        .fold(0u64, u64::saturating_add);
    let per_shard: Vec<u64> = model.shards.iter().map(|s| leaves(s)).collect();
    let counts = spread(&crate::sampling::random_leaf_indices(total, k)?, &per_shard);
    Ok(counts
        .into_iter()
        .map(|c| {
            let leaves = c.max(1);
            match policy {
                LeasePolicy::RecentFull { max_age, .. } => {
                    LeasePolicy::RecentFull { max_age, leaves }
                }
                _ => LeasePolicy::Sampled { leaves },
            }
        })
        .collect())
}

/// How many of `indices` (leaf indices over the whole model, shard after
/// shard) fall in each shard of `leaves` leaves.
fn spread(indices: &[u64], leaves: &[u64]) -> Vec<u32> {
    let mut counts = vec![0u32; leaves.len()];
    for &index in indices {
        let mut index = index;
        for (&n, count) in leaves.iter().zip(counts.iter_mut()) {
            if index < n {
                *count = count.saturating_add(1);
                break;
            }
            index = index.saturating_sub(n);
        }
    }
    counts
}

/// Access to a sealed model's weights, granted after every shard's
/// verification held (see [`Lease`]). Borrows the model: it cannot be
/// released while the lease lives.
#[derive(Debug)]
pub struct ModelLease<'m> {
    model: &'m SealedModel,
    leases: Vec<Lease<'m>>,
    policy: LeasePolicy,
}

impl<'m> ModelLease<'m> {
    pub(crate) fn new(model: &'m SealedModel, leases: Vec<Lease<'m>>, policy: LeasePolicy) -> Self {
        Self {
            model,
            leases,
            policy,
        }
    }

    /// The leased model.
    #[must_use]
    pub fn model(&self) -> &'m SealedModel {
        self.model
    }

    /// The policy the lease was asked with.
    #[must_use]
    pub fn policy(&self) -> LeasePolicy {
        self.policy
    }

    /// Each shard's lease, in position order.
    #[must_use]
    pub fn leases(&self) -> &[Lease<'m>] {
        &self.leases
    }

    /// Each shard's verification, in position order.
    pub fn verifications(&self) -> impl Iterator<Item = &VerifyReport> {
        self.leases.iter().map(Lease::verification)
    }

    /// Leaves re-read, bytes hashed and time spent verifying, all shards.
    #[must_use]
    pub fn verification_cost(&self) -> (u64, u64, Duration) {
        self.verifications()
            .fold((0, 0, Duration::ZERO), |(l, b, t), v| {
                (
                    l.saturating_add(v.leaves_checked),
                    b.saturating_add(v.bytes_checked),
                    t.saturating_add(v.elapsed),
                )
            })
    }

    /// The model's tensors, by name across its shards, over one access to
    /// each shard's memory (see [`Lease::tensors`]).
    ///
    /// The tensors, and every view of one, borrow this lease: none can be
    /// used once it is dropped.
    ///
    /// ```compile_fail,E0505
    /// # fn f(manager: &vram_residency::VramManager, model: &vram_residency::SealedModel) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease_model(model, Default::default())?;
    /// let tensors = lease.tensors()?;
    /// drop(lease); // error: `lease` is borrowed by `tensors`
    /// let _weight = tensors.get("weight")?.host_bytes();
    /// # Ok(()) }
    /// ```
    ///
    /// Used while the lease lives, they compile:
    ///
    /// ```no_run
    /// # fn f(manager: &vram_residency::VramManager, model: &vram_residency::SealedModel) -> Result<(), vram_residency::VramError> {
    /// let lease = manager.lease_model(model, Default::default())?;
    /// let tensors = lease.tensors()?;
    /// let _weight = tensors.get("weight")?.host_bytes();
    /// drop(tensors);
    /// drop(lease);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`VramError::NotSafetensors`] when a shard holds no usable
    /// safetensors file; [`VramError::InvalidModel`] when two shards hold a
    /// tensor of the same name; as [`Lease::memory`].
    pub fn tensors(&self) -> Result<ModelTensors<'_>, VramError> {
        let index = self.model.tensor_index()?;
        let parts = self
            .leases
            .iter()
            .map(Lease::tensors)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ModelTensors {
            model: self.model,
            index,
            parts,
        })
    }
}

/// A model's tensors, looked up by name across its shards. Borrows the
/// [`ModelLease`] (`'l`) it came from.
#[derive(Debug)]
pub struct ModelTensors<'l> {
    model: &'l SealedModel,
    index: &'l HashMap<String, usize>,
    parts: Vec<Tensors<'l>>,
}

impl ModelTensors<'_> {
    /// The tensor of that name, from whichever shard holds it.
    ///
    /// # Errors
    /// [`VramError::UnknownTensor`] when no shard holds it.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>, VramError> {
        let part = self
            .index
            .get(name)
            .and_then(|&i| self.parts.get(i))
            .ok_or_else(|| VramError::UnknownTensor {
                shard_id: escape_for_log(self.model.model_ref.as_str(), 200),
                name: escape_for_log(name, 128),
            })?;
        part.get(name)
    }

    /// How many tensors the model has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the model has no tensors.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn model_leaf_indices_are_counted_in_their_shards() {
        // Shards of 3, 1 and 2 leaves: indices 0-2, 3, 4-5.
        assert_eq!(spread(&[0, 2, 3, 4, 5, 5], &[3, 1, 2]), [2, 1, 3]);
        assert_eq!(spread(&[3], &[3, 1, 2]), [0, 1, 0]);
        assert_eq!(spread(&[], &[3, 1, 2]), [0, 0, 0]);
        // Beyond the last leaf: counted nowhere.
        assert_eq!(spread(&[6], &[3, 1, 2]), [0, 0, 0]);
    }
}
