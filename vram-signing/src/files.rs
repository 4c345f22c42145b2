//! Matching a model on disk against its signed statement, under
//! model_signing's rules.

use crate::error::{first_names, shown, SigningError};
use crate::statement::SignedModel;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Paths model_signing's `verify` ignores by default (`--ignore-git-paths`).
const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];
/// Deepest directory nesting walked (symlinked directories could loop).
const MAX_DEPTH: usize = 64;

/// A file of the model with the digest its signature gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFile {
    /// Its name in the statement (`/`-separated, relative; `.` for a
    /// single-file model).
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// The SHA-256 it must have.
    pub sha256: [u8; 32],
}

impl SignedFile {
    /// [`sha256`](Self::sha256) in lower-case hex.
    #[must_use]
    pub fn sha256_hex(&self) -> String {
        vram_validation::hex::encode(&self.sha256)
    }
}

/// Whether `rel` (relative to the model) lies under one of `ignored`.
fn ignored(rel: &Path, ignored: &[PathBuf]) -> bool {
    ignored.iter().any(|p| rel.starts_with(p))
}

impl SignedModel {
    /// Lists the model at `model_path` (a directory, or a single file) the
    /// way model_signing 1.1.1 `verify` does and matches it against the
    /// statement: every regular file not under an ignored path (the
    /// statement's `ignore_paths`, git's paths, and `also_ignore`, e.g. the
    /// signature file itself; relative to the model, or absolute paths
    /// inside it) must be signed, and every signed file present. Symbolic
    /// links are refused unless the serialization allows them (then they are
    /// followed); anything that is neither a file nor a directory is refused.
    /// Returns the files sorted by name with their signed digests: the
    /// caller checks the bytes.
    ///
    /// # Errors
    /// [`SigningError::Missing`], [`SigningError::Extra`],
    /// [`SigningError::Symlink`], [`SigningError::NotFileOrDir`],
    /// [`SigningError::Io`].
    pub fn files_in(
        &self,
        model_path: &Path,
        also_ignore: &[PathBuf],
    ) -> Result<Vec<SignedFile>, SigningError> {
        let allow_symlinks = self.serialization.allow_symlinks;
        let meta =
            std::fs::symlink_metadata(model_path).map_err(|e| SigningError::io(model_path, e))?;
        if meta.file_type().is_symlink() && !allow_symlinks {
            return Err(SigningError::Symlink {
                name: shown(&model_path.to_string_lossy()),
            });
        }
        let meta = std::fs::metadata(model_path).map_err(|e| SigningError::io(model_path, e))?;
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        if meta.is_file() {
            found.insert(".".into(), model_path.to_path_buf());
        } else if meta.is_dir() {
            let mut ignore: Vec<PathBuf> = GIT_PATHS.iter().map(PathBuf::from).collect();
            ignore.extend(self.serialization.ignore_paths.iter().map(PathBuf::from));
            for p in also_ignore {
                match p.strip_prefix(model_path) {
                    Ok(rel) => ignore.push(rel.to_path_buf()),
                    Err(_) if p.is_relative() => ignore.push(p.clone()),
                    Err(_) => {}
                }
            }
            // Ignore entries are relative paths without `..` (one that
            // escapes the model ignores nothing, as in model_signing).
            ignore.retain(|p| p.components().all(|c| matches!(c, Component::Normal(_))));
            let mut walker = Walker {
                root: model_path,
                allow_symlinks,
                ignore: &ignore,
                found: &mut found,
            };
            walker.walk(Path::new(""), 0, true)?;
        } else {
            return Err(SigningError::NotFileOrDir {
                name: shown(&model_path.to_string_lossy()),
            });
        }

        let extra: Vec<&str> = found
            .keys()
            .map(String::as_str)
            .filter(|n| self.digest_of(n).is_none())
            .collect();
        if !extra.is_empty() {
            return Err(SigningError::Extra {
                count: extra.len(),
                names: first_names(extra.into_iter()),
            });
        }
        let missing: Vec<&str> = self
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .filter(|n| !found.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            return Err(SigningError::Missing {
                count: missing.len(),
                names: first_names(missing.into_iter()),
            });
        }
        Ok(self
            .resources
            .iter()
            .filter_map(|r| {
                found.remove(&r.name).map(|path| SignedFile {
                    name: r.name.clone(),
                    path,
                    sha256: r.sha256,
                })
            })
            .collect())
    }
}

struct Walker<'a> {
    root: &'a Path,
    allow_symlinks: bool,
    ignore: &'a [PathBuf],
    found: &'a mut BTreeMap<String, PathBuf>,
}

impl Walker<'_> {
    /// Collects the regular files under `root/rel` by `/`-joined name; under
    /// an ignored directory (`collect` false) only checks them, as
    /// model_signing checks every path its walk meets before the ignore
    /// rules.
    fn walk(&mut self, rel: &Path, depth: usize, collect: bool) -> Result<(), SigningError> {
        let dir = self.root.join(rel);
        if depth > MAX_DEPTH {
            return Err(SigningError::NotFileOrDir {
                name: format!(
                    "{} (nested over {MAX_DEPTH} levels)",
                    shown(&dir.to_string_lossy())
                ),
            });
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| SigningError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SigningError::io(&dir, e))?;
            let rel_path = rel.join(entry.file_name());
            let path = entry.path();
            let shown_name = || shown(&rel_path.to_string_lossy());
            let ft = entry.file_type().map_err(|e| SigningError::io(&path, e))?;
            if ft.is_symlink() && !self.allow_symlinks {
                return Err(SigningError::Symlink { name: shown_name() });
            }
            let meta = std::fs::metadata(&path).map_err(|e| SigningError::io(&path, e))?;
            if !meta.is_file() && !meta.is_dir() {
                return Err(SigningError::NotFileOrDir { name: shown_name() });
            }
            let keep = collect && !ignored(&rel_path, self.ignore);
            if meta.is_dir() {
                self.walk(&rel_path, depth.saturating_add(1), keep)?;
                continue;
            }
            if !keep {
                continue;
            }
            let name = rel_path
                .to_str()
                .ok_or_else(|| SigningError::Extra {
                    count: 1,
                    names: format!("{} (not UTF-8: no signature can name it)", shown_name()),
                })?
                .to_string();
            self.found.insert(name, path);
        }
        Ok(())
    }
}
