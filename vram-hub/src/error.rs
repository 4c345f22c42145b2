//! The crate's one error type. Names from the cache (files, revisions) are
//! escaped before they reach a message.

use std::path::PathBuf;

/// Why a model could not be resolved or checked in the hub cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The reference is not `hf://ORG/NAME[@REVISION]`.
    #[error("invalid model reference `{shown}`: {reason}; expected hf://ORG/NAME[@REVISION]")]
    InvalidReference {
        /// The reference, escaped and shortened.
        shown: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// No cache directory could be found (no `HF_HUB_CACHE`, `HF_HOME` or home).
    #[error("no Hugging Face cache directory: set HF_HUB_CACHE or HF_HOME")]
    NoCacheDir,

    /// The model is not in the cache.
    #[error("{repo} is not in the Hugging Face cache at {cache}; download it first (for example `huggingface-cli download {repo}`)")]
    NotCached {
        /// `ORG/NAME`.
        repo: String,
        /// The cache directory searched.
        cache: PathBuf,
    },

    /// The revision is neither a branch in `refs/` nor a cached snapshot.
    #[error(
        "{repo} has no revision `{revision}` in the cache; revisions present: {}",
        list(available)
    )]
    UnknownRevision {
        /// `ORG/NAME`.
        repo: String,
        /// The revision asked for, escaped.
        revision: String,
        /// Branch names and snapshot commits found.
        available: Vec<String>,
    },

    /// A snapshot entry is a link to a blob that is not there.
    #[error("{repo}: `{file}` links to a blob that is missing (dangling link in the cache)")]
    DanglingLink {
        /// `ORG/NAME`.
        repo: String,
        /// The file's name inside the snapshot, escaped.
        file: String,
    },

    /// A snapshot entry leads outside the model's `blobs/` directory.
    #[error("{repo}: `{file}` leads outside the model's blobs directory; refusing to read it")]
    EscapingLink {
        /// `ORG/NAME`.
        repo: String,
        /// The file's name inside the snapshot, escaped.
        file: String,
    },

    /// A snapshot entry's blob is not named by a digest.
    #[error("{repo}: `{file}` links to a blob not named by a SHA-256 or git blob id")]
    NotABlob {
        /// `ORG/NAME`.
        repo: String,
        /// The file's name inside the snapshot, escaped.
        file: String,
    },

    /// A snapshot entry is a plain file where the cache keeps links to
    /// blobs: it has no blob name, so no digest to be checked against.
    #[error("{repo}: `{file}` is a plain file where the cache keeps links to blobs, so nothing says what it should hold; refusing it (fetch it again, or, for a cache written without links, say so explicitly)")]
    PlainFile {
        /// `ORG/NAME`.
        repo: String,
        /// The file's name inside the snapshot, escaped.
        file: String,
    },

    /// A model file's name or link leads outside the model's directory (a
    /// hub snapshot's links may lead into its own model's `blobs/` only).
    #[error("`{file}` leads outside the model directory; refusing to read it")]
    LeavesModel {
        /// The file's name in the model directory, escaped.
        file: String,
    },

    /// A model file is not a regular file (a FIFO, a device, a directory).
    #[error("`{file}` is {found}, not a regular file; refusing to read it")]
    NotRegularFile {
        /// The file's name in the model directory, escaped.
        file: String,
        /// What it is instead.
        found: &'static str,
    },

    /// A model file is larger than any file of its kind.
    #[error("{file} is larger than {max} bytes")]
    FileTooLarge {
        /// The file's name in the model directory, escaped.
        file: String,
        /// The limit.
        max: u64,
    },

    /// The snapshot holds more files, or deeper folders, than any model does.
    #[error(
        "{repo}: the snapshot holds more than {max} files or folders deeper than 16; refusing it"
    )]
    TooLarge {
        /// `ORG/NAME`.
        repo: String,
        /// The limit.
        max: usize,
    },

    /// A snapshot directory does not say which files are the model (no
    /// weights, a bad `model.safetensors.index.json`, a module path that
    /// leaves it).
    #[error("{}: {reason}", dir.display())]
    Layout {
        /// The snapshot directory.
        dir: PathBuf,
        /// What is wrong, in our words (names from the files escaped).
        reason: String,
    },

    /// Reading the cache failed.
    #[error("{}: {kind}", path.display())]
    Io {
        /// The path (inside the cache).
        path: PathBuf,
        /// The error's kind.
        kind: std::io::ErrorKind,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: &std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            kind: e.kind(),
        }
    }
}
