//! Which engine serves a model, and how each is built over a sealed model:
//! the BERT-family embedder (a sentence-transformers snapshot) or a text
//! generator (a GGUF language model).

use std::path::Path;
use std::sync::Arc;

use vram_embed::{Embedder, LeasedWeights, SealedWeights};
use vram_llm::TextGeneration;
use vram_residency::LeasePolicy;

use crate::metrics::HeldModel;
use crate::state::EmbeddingEngine;
use crate::worker::{ModelLocation, Worker};
use crate::ServeError;

/// What kind of model `--model` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A sentence-transformers snapshot: `/v1/embeddings`.
    Embeddings,
    /// A GGUF language model: `/v1/completions`, `/v1/chat/completions`.
    Text,
}

fn is_gguf(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The kind of `model`: a `.gguf` file (on disk or `hf://ORG/NAME/FILE.gguf`),
/// or a directory holding `.gguf` files and no `model.safetensors`
/// (nor its index), is a text model; anything else a snapshot to embed with.
#[must_use]
pub fn model_kind(model: &str) -> ModelKind {
    if is_gguf(model) {
        return ModelKind::Text;
    }
    let dir = Path::new(model);
    let safetensors = ["model.safetensors", "model.safetensors.index.json"]
        .iter()
        .any(|f| dir.join(f).exists());
    let gguf = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| is_gguf(&e.file_name().to_string_lossy()))
    });
    if gguf && !safetensors {
        ModelKind::Text
    } else {
        ModelKind::Embeddings
    }
}

/// The text generator for a GGUF model on `worker`, each request under a
/// lease of `policy`: the one place the GGUF engine is wired in. `model` is
/// a `.gguf` file, a directory holding exactly one, or one file of a cached
/// hub repository (`hf://ORG/NAME[@REVISION]/FILE.gguf`, the SHA-256 its
/// blob's name promises checked in the sealing pass), sealed as one shard;
/// or a model split by llama.cpp's `gguf-split` (a directory holding its
/// parts, or one of them), sealed as one model of one shard per part. It is
/// verified in full, and its tokenizer, chat template and hyperparameters
/// are read from the sealed header (the first part's).
///
/// # Errors
/// [`ServeError::UnsupportedDevice`] on CUDA in a build without the CUDA
/// engine (feature `cuda-engine`), and [`ServeError::Text`] (exit 3) when the
/// CUDA engine's libraries are missing, before anything is sealed; [`ServeError::Usage`] for a model that is not
/// one GGUF file; [`ServeError::Worker`] for a hub cache that cannot be read
/// or a blob whose SHA-256 is not the one its name promises (exit 1);
/// [`ServeError::Text`] when the engine refuses the model.
pub fn text_engine(
    worker: &Worker,
    model: &str,
    policy: LeasePolicy,
) -> Result<Arc<dyn TextGeneration>, ServeError> {
    let device = compute_device(worker)?;
    // A split model's parts are sealed as one model (one shard each, in
    // part order); one file as one shard.
    let (location, parts) = if model.starts_with("hf://") {
        let location = crate::worker::locate_gguf(model)?.ok_or_else(|| {
            ServeError::Usage(format!(
                "{}: name the GGUF file of the repository (hf://ORG/NAME[@REVISION]/FILE.gguf)",
                crate::shown(model)
            ))
        })?;
        let parts = location.layout.is_some();
        (location, parts)
    } else if let Some(location) = split_location(Path::new(model))? {
        (location, true)
    } else {
        let file = gguf_file_of(Path::new(model))?;
        let stem = file
            .file_stem()
            .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
        (ModelLocation::file(&file, file_model_ref(&stem)?), false)
    };
    let source = if parts {
        vram_llm::GgufSource::Model(Arc::new(worker.seal_snapshot(&location)?))
    } else {
        vram_llm::GgufSource::Shard(Arc::new(worker.seal(&location)?))
    };
    load_text(worker, location.model_ref.as_str(), source, policy, device)
}

/// `file:STEM`, or `model` for a stem that is no model reference.
fn file_model_ref(stem: &str) -> Result<vram_residency::ModelRef, ServeError> {
    vram_residency::ModelRef::new(&format!("file:{stem}"))
        .or_else(|_| vram_residency::ModelRef::new("model"))
        .map_err(|e| ServeError::Usage(format!("model reference: {e}")))
}

/// Where a split GGUF model `path` names is, if it names one: a directory
/// whose GGUF files are the parts of one model split by llama.cpp's
/// `gguf-split` (`NAME-00001-of-0000N.gguf`, N > 1), sealed through the
/// directory's layout; or one of those parts (as `llama-server -m` takes
/// the first), its model's parts found beside it whatever else the
/// directory holds. `None` for one GGUF file, or a directory holding one.
///
/// # Errors
/// [`ServeError::Usage`] for a directory that cannot be read, or whose GGUF
/// files are not one model (several models, a missing part), named.
fn split_location(path: &Path) -> Result<Option<ModelLocation>, ServeError> {
    let shown = || crate::shown(&path.display().to_string());
    if !path.is_dir() {
        let Some(base) = vram_hub::gguf_part_model(path) else {
            return Ok(None);
        };
        let location = ModelLocation::gguf_parts(path, file_model_ref(&base)?)
            .map_err(crate::worker::worker_error)?;
        return Ok(Some(location));
    }
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map_err(|e| ServeError::Usage(format!("{}: {e}", shown())))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| is_gguf(n))
        .collect();
    names.sort();
    match vram_format::gguf_model_files(&names) {
        Ok(Some(parts)) if parts.len() > 1 => {
            let location = crate::worker::locate(&path.display().to_string(), true)?;
            Ok(Some(location))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(ServeError::Usage(format!("{}: {e}", shown()))),
    }
}

fn load_text(
    worker: &Worker,
    model_id: &str,
    source: vram_llm::GgufSource,
    policy: LeasePolicy,
    device: vram_llm::Device,
) -> Result<Arc<dyn TextGeneration>, ServeError> {
    let generator =
        vram_llm::load_generator_on(model_id, worker.shared_manager(), source, policy, device)
            .map_err(ServeError::Text)?;
    Ok(Arc::new(generator))
}

/// Where the GGUF engine computes on `worker`'s device, decided before
/// anything is sealed: the CPU over the mock's host memory; on CUDA, candle's
/// CUDA device on the sealing device (feature `cuda-engine`), whose
/// libraries are checked here, so a host that cannot run it is refused at
/// start (exit 3), never at the first request.
///
/// # Errors
/// [`ServeError::UnsupportedDevice`] on CUDA in a build without the CUDA
/// engine; [`ServeError::Text`] (exit 3) naming the CUDA libraries that are
/// missing, or the driver's error.
fn compute_device(worker: &Worker) -> Result<vram_llm::Device, ServeError> {
    match worker.device_kind() {
        "mock" => Ok(vram_llm::Device::Cpu),
        #[cfg(feature = "cuda-engine")]
        "cuda" => vram_llm::cuda_device(worker.target()).map_err(ServeError::Text),
        other => Err(ServeError::UnsupportedDevice {
            engine: "the GGUF engine",
            device: other,
            reason: "this build computes on the CPU from host bytes of the leased weights, which \
                     a device-memory lease does not give; serve it with --device mock, or build \
                     vram-serve with --features cuda-engine (cargo xtask gpu)",
        }),
    }
}

/// The one GGUF file `path` names: the file itself, or the only `.gguf`
/// file of a directory.
fn gguf_file_of(path: &Path) -> Result<std::path::PathBuf, ServeError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(|e| {
            ServeError::Usage(format!(
                "{}: {e}",
                crate::shown(&path.display().to_string())
            ))
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| is_gguf(&n.to_string_lossy())))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(ServeError::Usage(format!(
            "{}: holds {n} GGUF files that are not the parts of one split model; name the one to \
             serve",
            crate::shown(&path.display().to_string())
        ))),
    }
}

/// The embedder over `location` sealed on `worker`: refuses a device the
/// embedder cannot compute on before anything is sealed, seals the snapshot,
/// reads its small files as sealed, verifies every leaf once, and returns
/// the engine with what `/metrics` and `/health` watch. One embedding is
/// computed on that first lease, so weights the model cannot use are
/// refused at start.
///
/// # Errors
/// [`ServeError::UnsupportedDevice`] on CUDA (the embedder computes on the
/// CPU from host bytes, which a CUDA lease does not give); the worker's
/// errors as `vram seal` reports them; the snapshot's and the full
/// verification's.
pub fn embedding_engine(
    worker: &Worker,
    location: &ModelLocation,
    policy: LeasePolicy,
) -> Result<(EmbeddingEngine, HeldModel), ServeError> {
    let compute = embedding_device(worker)?;
    let model = worker.seal_snapshot(location)?;
    let held = HeldModel {
        manager: worker.manager().clone(),
        shards: model.shards().to_vec(),
        device_kind: worker.device_kind(),
    };
    let weights = SealedWeights::new(worker.manager().clone(), model, policy);
    let snapshot = weights.snapshot()?;
    let embedder = Embedder::on(&snapshot, compute)?;
    // Every leaf verified once, and one embedding computed on that lease:
    // weights the model cannot use (a missing tensor, a wrong shape, bytes
    // the embedder cannot read) stop the worker here, not at a request.
    let (micros, probe) = LeasedWeights::with_lease(
        weights.manager(),
        weights.model(),
        LeasePolicy::Full,
        |full| {
            (
                full.lease().verification_cost().2.as_micros(),
                embedder.embed(full, "").map(|_| ()),
            )
        },
    )?;
    probe?;
    tracing::info!(
        micros,
        "full verification and a first embedding before serving"
    );
    Ok((
        EmbeddingEngine {
            embedder: Arc::new(embedder),
            weights: Arc::new(weights),
        },
        held,
    ))
}

/// The embedder's refusal of a device whose memory it cannot read.
#[must_use]
pub fn unsupported_device(device: &'static str) -> ServeError {
    ServeError::UnsupportedDevice {
        engine: "the BERT embedder",
        device,
        reason: "this build computes on the CPU from host bytes of the leased weights, which \
                 a device-memory lease does not give; serve it with --device mock, or build \
                 vram-serve with --features cuda-engine (cargo xtask gpu)",
    }
}

/// Where the embedder computes on `worker`'s device, decided before
/// anything is sealed: the CPU over the mock's host memory; on CUDA,
/// candle's CUDA device on the sealing device (feature `cuda-engine`, its
/// libraries checked here: exit 3 naming what is missing).
///
/// # Errors
/// [`unsupported_device`] on CUDA in a build without the feature;
/// [`ServeError::Embed`] (exit 3) naming missing CUDA libraries.
pub fn embedding_device(worker: &Worker) -> Result<vram_llm::Device, ServeError> {
    match worker.device_kind() {
        "mock" => Ok(vram_llm::Device::Cpu),
        #[cfg(feature = "cuda-engine")]
        "cuda" => vram_embed::cuda_device(worker.target()).map_err(ServeError::from),
        other => Err(unsupported_device(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_files_and_directories_of_them_are_text_models() {
        assert_eq!(model_kind("model.gguf"), ModelKind::Text);
        assert_eq!(model_kind("hf://org/name/Model.Q4_1.GGUF"), ModelKind::Text);
        assert_eq!(
            model_kind("hf://sentence-transformers/all-MiniLM-L6-v2"),
            ModelKind::Embeddings
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        assert_eq!(model_kind(path), ModelKind::Embeddings);
        std::fs::write(dir.path().join("m-00001-of-00002.gguf"), b"GGUF").unwrap();
        assert_eq!(model_kind(path), ModelKind::Text);
        // A snapshot's weights decide for it.
        std::fs::write(dir.path().join("model.safetensors"), b"x").unwrap();
        assert_eq!(model_kind(path), ModelKind::Embeddings);
    }

    #[test]
    fn a_file_that_is_not_a_gguf_model_is_refused_at_start() {
        let worker = crate::worker::open(&crate::worker::WorkerConfig {
            device: "mock".into(),
            quiet: true,
            ..Default::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"GGUF but nothing else").unwrap();
        let Err(e) = text_engine(&worker, &file.display().to_string(), LeasePolicy::Full) else {
            panic!("a text engine was built");
        };
        assert!(e.to_string().starts_with("text engine: "), "{e}");
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
