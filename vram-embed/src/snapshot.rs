//! A sentence-transformers snapshot directory: the small files that decide
//! how a text becomes an embedding. The weights are not read here: they
//! come from a [`crate::TensorSource`].

use std::path::{Path, PathBuf};

use candle_transformers::models::bert;
use serde::Deserialize;
use serde_json::{Map, Value};

use vram_residency::{SealedModel, VramManager};

use crate::error::shown_path;
use crate::{EmbedError, Pooling};
use vram_format::sentence_transformers::Modules;

/// Largest `tokenizer.json` read (a BERT vocabulary is ~0.5 MB; large
/// multilingual ones ~20 MB).
const MAX_TOKENIZER_BYTES: u64 = 64 * 1024 * 1024;
/// Largest other JSON file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The weights file of a single-file snapshot.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Where a snapshot's small files come from: `(name, cap, required)` →
/// the bytes (at most `cap`), or `None` for an optional file not there.
type FileSource<'a> = dyn FnMut(&str, u64, bool) -> Result<Option<Vec<u8>>, EmbedError> + 'a;

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The parsed small files of a snapshot: model config, tokenizer, pooling,
/// normalisation, maximum sequence length.
pub struct ModelSnapshot {
    dir: PathBuf,
    pub(crate) config: bert::Config,
    pub(crate) tokenizer_json: Vec<u8>,
    pub(crate) pooling: Pooling,
    pub(crate) normalize: bool,
    pub(crate) max_seq_length: usize,
    files: Vec<String>,
}

impl std::fmt::Debug for ModelSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSnapshot")
            .field("dir", &self.dir)
            .field("hidden_size", &self.config.hidden_size)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ModelSnapshot {
    /// Reads a sentence-transformers snapshot: `modules.json` (a
    /// `Transformer`, then a `Pooling`, optionally a `Normalize`, nothing
    /// else), the transformer's `config.json` (a BERT) and `tokenizer.json`,
    /// the pooling module's `config.json`, and `sentence_bert_config.json`
    /// when present (its `max_seq_length`, otherwise the model's
    /// `max_position_embeddings`).
    ///
    /// # Errors
    ///
    /// [`EmbedError::Io`] when a file cannot be read; [`EmbedError::Snapshot`]
    /// when one is invalid, too large, or asks for a module, pooling or
    /// activation this crate does not implement, or a module path leaves
    /// the directory.
    pub fn open(dir: &Path) -> Result<Self, EmbedError> {
        Self::open_with(
            dir,
            &mut |rel, cap, required| match vram_hub::read_model_file(dir, rel, cap) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(vram_hub::HubError::Io {
                    kind: std::io::ErrorKind::NotFound,
                    ..
                }) if !required => Ok(None),
                Err(e) => Err(file_error(dir, rel, cap, e)),
            },
        )
    }

    /// [`ModelSnapshot::open`] for a snapshot sealed as one model: every
    /// small file comes from [`VramManager::model_file`], so only if it is
    /// bound to the seal and still the bytes that were sealed.
    ///
    /// # Errors
    /// As [`ModelSnapshot::open`]; [`EmbedError::Snapshot`] for a file the
    /// model did not bind; [`EmbedError::Lease`] (integrity) for a bound file
    /// that changed since it was sealed.
    pub fn open_sealed(manager: &VramManager, model: &SealedModel) -> Result<Self, EmbedError> {
        Self::open_with(model.dir(), &mut |rel, cap, required| {
            if !model.has_file(rel) {
                if required {
                    return Err(EmbedError::snapshot(
                        rel,
                        "is not bound to the model's seal (absent when it was sealed)",
                    ));
                }
                return Ok(None);
            }
            let bytes = manager
                .model_file(model, rel)
                .map_err(crate::sealed::lease_error)?;
            if u64::try_from(bytes.len()).map_or(true, |n| n > cap) {
                return Err(EmbedError::snapshot(
                    rel,
                    format!("larger than {cap} bytes"),
                ));
            }
            Ok(Some(bytes))
        })
    }

    /// Reads the snapshot's small files through `source(name, cap,
    /// required)`: the file's bytes (at most `cap`), or `None` for an
    /// optional file that is not there.
    fn open_with(dir: &Path, source: &mut FileSource<'_>) -> Result<Self, EmbedError> {
        let mut files = Vec::new();
        let mut fetch =
            |rel: &str, cap: u64, required: bool| -> Result<Option<Vec<u8>>, EmbedError> {
                let bytes = source(rel, cap, required)?;
                if bytes.is_some() {
                    files.push(rel.to_owned());
                }
                Ok(bytes)
            };
        let mut read = |rel: &str, cap: u64| -> Result<Vec<u8>, EmbedError> {
            fetch(rel, cap, true)?.ok_or_else(|| EmbedError::snapshot(rel, "is missing"))
        };
        // The workspace's one parser of the layout (vram-format), the hub's
        // verdict on the same file.
        let modules =
            Modules::parse(&read("modules.json", MAX_CONFIG_BYTES)?).map_err(modules_error)?;
        let pipeline = modules.pipeline().map_err(modules_error)?;
        let (transformer, pooling_dir, normalize) =
            (pipeline.transformer, pipeline.pooling, pipeline.normalize);
        let config_rel = join_rel(transformer, "config.json");
        let config: bert::Config = json(&read(&config_rel, MAX_CONFIG_BYTES)?, &config_rel)?;
        if config.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(EmbedError::snapshot(
                &config_rel,
                "model_type is not bert (only BERT models are implemented)",
            ));
        }
        let tokenizer_rel = join_rel(transformer, "tokenizer.json");
        let tokenizer_json = read(&tokenizer_rel, MAX_TOKENIZER_BYTES)?;
        let pooling_rel = join_rel(pooling_dir, "config.json");
        let pooling_config: Map<String, Value> =
            json(&read(&pooling_rel, MAX_CONFIG_BYTES)?, &pooling_rel)?;
        let pooling = Pooling::from_config(&pooling_config, config.hidden_size)
            .map_err(|reason| EmbedError::snapshot(&pooling_rel, reason))?;
        let st_rel = join_rel(transformer, "sentence_bert_config.json");
        let max_seq_length = match fetch(&st_rel, MAX_CONFIG_BYTES, false)? {
            Some(bytes) => json::<SentenceBertConfig>(&bytes, &st_rel)?.max_seq_length,
            None => None,
        };
        // Positions past the embedding table do not exist: never longer.
        let max_seq_length = max_seq_length
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(EmbedError::snapshot(
                &st_rel,
                "max_seq_length leaves no room for [CLS] and [SEP]",
            ));
        }
        tracing::info!(
            dir = %dir.display(),
            ?pooling,
            normalize,
            max_seq_length,
            hidden_size = config.hidden_size,
            layers = config.num_hidden_layers,
            "sentence-transformers snapshot read"
        );
        Ok(Self {
            dir: dir.to_owned(),
            config,
            tokenizer_json,
            pooling,
            normalize,
            max_seq_length,
            files,
        })
    }

    /// Where the single-file weights of this snapshot are:
    /// `DIR/model.safetensors`.
    #[must_use]
    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    /// The files read, relative to the directory: the ones that change what
    /// a text becomes, to be hashed and bound to the model's seal.
    #[must_use]
    pub fn inference_files(&self) -> &[String] {
        &self.files
    }

    /// The pooling the snapshot asks for.
    #[must_use]
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether embeddings are L2-normalised.
    #[must_use]
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// Tokens per text at most, `[CLS]` and `[SEP]` included.
    #[must_use]
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The embedding's length.
    #[must_use]
    pub fn dimensions(&self) -> usize {
        self.config.hidden_size
    }
}

/// A refused `modules.json`, in the layout parser's words (names already
/// escaped there).
fn modules_error(e: vram_format::FormatError) -> EmbedError {
    match e {
        vram_format::FormatError::Layout { reason } => EmbedError::snapshot("modules.json", reason),
        other => EmbedError::snapshot("modules.json", other.to_string()),
    }
}

fn join_rel(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_owned()
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], rel: &str) -> Result<T, EmbedError> {
    serde_json::from_slice(bytes).map_err(|e| EmbedError::snapshot(rel, e.to_string()))
}

/// A small file that could not be read, as this crate reports it: the
/// operating system's error with its path, or why the file was refused
/// (over its cap, a link out of the snapshot, not a regular file).
fn file_error(dir: &Path, rel: &str, cap: u64, e: vram_hub::HubError) -> EmbedError {
    match e {
        vram_hub::HubError::Io { kind, .. } => EmbedError::Io {
            path: shown_path(&dir.join(rel)),
            kind,
        },
        vram_hub::HubError::FileTooLarge { .. } => {
            EmbedError::snapshot(rel, format!("larger than {cap} bytes"))
        }
        other => EmbedError::snapshot(rel, other.to_string()),
    }
}
