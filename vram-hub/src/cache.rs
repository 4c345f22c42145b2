//! The cache directory, revisions, and a snapshot's files.

use crate::expected::{check, Expected, FileCheck};
use crate::reference::is_commit;
use crate::{HubError, HubRef};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use vram_validation::escape_for_log;

/// Most files (and folders) a snapshot may hold; no model has more.
pub const MAX_SNAPSHOT_FILES: usize = 10_000;

/// Deepest folder nesting inside a snapshot.
const MAX_DEPTH: usize = 16;

/// The hub cache directory the environment names, as `huggingface_hub` finds
/// it: `HF_HUB_CACHE`; else `HF_HOME/hub`; else
/// `XDG_CACHE_HOME/huggingface/hub`; else `HOME/.cache/huggingface/hub`.
/// Empty variables count as unset. `env` reads a variable (`std::env::var_os`
/// in [`HubCache::from_env`]; a map in tests).
pub fn cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("HF_HUB_CACHE") {
        return Some(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return Some(home.join("hub"));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(xdg.join("huggingface").join("hub"));
    }
    var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// A local Hugging Face hub cache. Reading it never touches the network.
#[derive(Debug, Clone)]
pub struct HubCache {
    root: PathBuf,
    /// Whether snapshots hold plain files instead of links to blobs (a
    /// cache written where links cannot be made): then a plain file is
    /// taken, unchecked. Otherwise it is refused ([`HubError::PlainFile`]).
    without_links: bool,
}

/// One model at one commit, as cached.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `ORG/NAME`.
    pub repo_id: String,
    /// The resolved commit (40 hex digits).
    pub commit: String,
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Every file of the snapshot, sorted by name.
    pub files: Vec<CachedFile>,
}

/// One file of a snapshot.
#[derive(Debug, Clone)]
pub struct CachedFile {
    /// Its name inside the snapshot (`config.json`, `1_Pooling/config.json`).
    pub name: String,
    /// The blob it resolves to (canonical path), or the file itself in a
    /// cache written without links.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// The digest the blob's name promises; `None` for a file stored without
    /// a link, which has no blob name.
    pub expected: Option<Expected>,
}

impl CachedFile {
    /// Whether the hub stored it with Git LFS (its blob is named by SHA-256).
    #[must_use]
    pub fn is_lfs(&self) -> bool {
        matches!(self.expected, Some(Expected::Sha256(_)))
    }

    /// Hashes the file and compares it with its blob's name. `None` when it
    /// has no expected digest.
    ///
    /// # Errors
    /// [`HubError::Io`] when it cannot be read (or changes length meanwhile).
    pub fn check(&self) -> Result<Option<FileCheck>, HubError> {
        let Some(expected) = self.expected else {
            return Ok(None);
        };
        // Non-blocking open, not through a link, and checked on the
        // descriptor: a blob swapped for a FIFO or a link is refused, not
        // waited on.
        let (file, _) = crate::open::open_descriptor(
            &self.path,
            &self.path,
            &escape_for_log(&self.name, 200),
            None,
        )?;
        check(file, self.len, expected)
            .map(Some)
            .map_err(|e| HubError::io(&self.path, &e))
    }
}

impl Snapshot {
    /// `hf://ORG/NAME@COMMIT`: exactly which revision this is.
    #[must_use]
    pub fn reference(&self) -> String {
        format!("hf://{}@{}", self.repo_id, self.commit)
    }
}

impl HubCache {
    /// The cache at `root` (the directory holding `models--*` folders).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            without_links: false,
        }
    }

    /// Says that this cache was written without links (copies instead of
    /// links into `blobs/`, as on Windows without developer mode): a plain
    /// file in a snapshot is then taken with no expected digest. By default
    /// a plain file is refused ([`HubError::PlainFile`]), since nothing says
    /// what it should hold.
    #[must_use]
    pub fn without_links(mut self, yes: bool) -> Self {
        self.without_links = yes;
        self
    }

    /// The cache the environment names ([`cache_dir_from`]).
    ///
    /// # Errors
    /// [`HubError::NoCacheDir`] when no variable names one.
    pub fn from_env() -> Result<Self, HubError> {
        cache_dir_from(|name| std::env::var_os(name))
            .map(Self::at)
            .ok_or(HubError::NoCacheDir)
    }

    /// The cache directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds `model` in the cache: its revision (default `refs/main`; a
    /// branch or tag in `refs/`, or a full commit with a snapshot) and every
    /// file of that snapshot with its expected digest.
    ///
    /// # Errors
    /// [`HubError::NotCached`], [`HubError::UnknownRevision`] (listing the
    /// revisions present), [`HubError::DanglingLink`],
    /// [`HubError::EscapingLink`], [`HubError::NotABlob`],
    /// [`HubError::TooLarge`], [`HubError::Io`].
    pub fn resolve(&self, model: &HubRef) -> Result<Snapshot, HubError> {
        let repo = model.repo_id().to_owned();
        let repo_dir = self.root.join(model.cache_folder());
        if !repo_dir.is_dir() {
            return Err(HubError::NotCached {
                repo,
                cache: self.root.clone(),
            });
        }
        let revision = model.revision().unwrap_or("main");
        let snapshots = repo_dir.join("snapshots");
        let commit = if is_commit(revision) && snapshots.join(revision).is_dir() {
            Some(revision.to_owned())
        } else {
            read_ref(&repo_dir.join("refs").join(revision))?
        };
        let Some(commit) = commit.filter(|c| snapshots.join(c).is_dir()) else {
            return Err(HubError::UnknownRevision {
                repo,
                revision: escape_for_log(revision, 80),
                available: revisions(&repo_dir),
            });
        };
        let dir = snapshots.join(&commit);
        let blobs = repo_dir.join("blobs");
        let blobs = blobs.canonicalize().unwrap_or(blobs);
        let mut files = Vec::new();
        let walker = Walker {
            repo: &repo,
            blobs: &blobs,
            without_links: self.without_links,
        };
        walker.walk(&dir, "", 0, &mut files)?;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        tracing::debug!(repo = %repo, commit = %commit, files = files.len(), "resolved in the hub cache");
        Ok(Snapshot {
            repo_id: repo,
            commit,
            dir,
            files,
        })
    }
}

/// The commit a `refs/` file names; `None` when there is no such ref (or it
/// does not hold a commit).
fn read_ref(path: &Path) -> Result<Option<String>, HubError> {
    // Opened as any file of the cache someone else may write to: no link,
    // a FIFO refused rather than waited on, at most MAX_REF_BYTES read.
    match crate::open::read_regular_file(path, MAX_REF_BYTES) {
        Ok(bytes) => {
            let commit = String::from_utf8_lossy(&bytes);
            let commit = commit.trim();
            Ok(is_commit(commit).then(|| commit.to_owned()))
        }
        Err(HubError::Io {
            kind: std::io::ErrorKind::NotFound,
            ..
        })
        | Err(HubError::NotRegularFile {
            found: "a directory",
            ..
        })
        | Err(HubError::FileTooLarge { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The longest `refs/` file read: a commit id and a newline, with room.
const MAX_REF_BYTES: u64 = 1024;

/// Branch names under `refs/` and snapshot commits, for an error message.
fn revisions(repo_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut refs = Vec::new();
    list_refs(&repo_dir.join("refs"), "", 0, &mut refs);
    out.extend(refs);
    if let Ok(entries) = std::fs::read_dir(repo_dir.join("snapshots")) {
        let mut commits: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_commit(n))
            .collect();
        commits.sort();
        out.extend(commits);
    }
    out.truncate(50);
    out.iter().map(|r| escape_for_log(r, 80)).collect()
}

fn list_refs(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        match e.file_type() {
            Ok(t) if t.is_dir() && depth < 4 => {
                list_refs(&e.path(), &format!("{name}/"), depth.saturating_add(1), out)
            }
            Ok(t) if t.is_file() => out.push(name),
            _ => {}
        }
    }
}

/// Collects the files under `dir` (names relative to the snapshot).
struct Walker<'a> {
    repo: &'a str,
    blobs: &'a Path,
    without_links: bool,
}

impl Walker<'_> {
    fn walk(
        &self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        out: &mut Vec<CachedFile>,
    ) -> Result<(), HubError> {
        let (repo, blobs) = (self.repo, self.blobs);
        let too_large = || HubError::TooLarge {
            repo: repo.to_owned(),
            max: MAX_SNAPSHOT_FILES,
        };
        if depth > MAX_DEPTH {
            return Err(too_large());
        }
        let entries = std::fs::read_dir(dir).map_err(|e| HubError::io(dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| HubError::io(dir, &e))?;
            if out.len() >= MAX_SNAPSHOT_FILES {
                return Err(too_large());
            }
            let raw_name = entry.file_name().to_string_lossy().into_owned();
            let name = format!("{prefix}{raw_name}");
            let shown = || escape_for_log(&name, 120);
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| HubError::io(&path, &e))?;
            if kind.is_dir() {
                self.walk(&path, &format!("{name}/"), depth.saturating_add(1), out)?;
                continue;
            }
            if kind.is_file() {
                if !self.without_links {
                    return Err(HubError::PlainFile {
                        repo: repo.to_owned(),
                        file: shown(),
                    });
                }
                // A cache written without links: the file itself, no blob name.
                let len = entry.metadata().map_err(|e| HubError::io(&path, &e))?.len();
                out.push(CachedFile {
                    name,
                    path,
                    len,
                    expected: None,
                });
                continue;
            }
            if !kind.is_symlink() {
                continue;
            }
            let target = match path.canonicalize() {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(HubError::DanglingLink {
                        repo: repo.to_owned(),
                        file: shown(),
                    })
                }
                Err(e) => return Err(HubError::io(&path, &e)),
            };
            if target.parent() != Some(blobs) {
                return Err(HubError::EscapingLink {
                    repo: repo.to_owned(),
                    file: shown(),
                });
            }
            let blob_name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let expected =
                Expected::from_blob_name(&blob_name).ok_or_else(|| HubError::NotABlob {
                    repo: repo.to_owned(),
                    file: shown(),
                })?;
            let meta = std::fs::metadata(&target).map_err(|e| HubError::io(&target, &e))?;
            if !meta.is_file() {
                return Err(HubError::NotABlob {
                    repo: repo.to_owned(),
                    file: shown(),
                });
            }
            out.push(CachedFile {
                name,
                path: target,
                len: meta.len(),
                expected: Some(expected),
            });
        }
        Ok(())
    }
}
