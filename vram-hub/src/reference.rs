//! `hf://ORG/NAME[@REVISION][/FILE.gguf]`.

use crate::HubError;
use vram_validation::escape_for_log;

/// A model in the hub: `hf://ORG/NAME[@REVISION]` (or `hf://NAME` for the
/// hub's few models without an organisation).
///
/// Names follow the hub's rules: letters, digits, `-`, `_` and `.`, at most 96
/// characters each, no `--` or `..`. A revision is a branch, tag or commit:
/// letters, digits and `-_./`, at most 255 characters, no `..`, not starting
/// or ending with `/`.
///
/// ```
/// let r = vram_hub::HubRef::parse("hf://sentence-transformers/all-MiniLM-L6-v2@main")?;
/// assert_eq!(r.repo_id(), "sentence-transformers/all-MiniLM-L6-v2");
/// assert_eq!(r.revision(), Some("main"));
/// assert!(vram_hub::HubRef::parse("hf://org/../x").is_err());
/// # Ok::<(), vram_hub::HubError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    repo_id: String,
    revision: Option<String>,
    /// One GGUF file of the repository (`hf://ORG/NAME/FILE.gguf`): GGUF
    /// repositories hold one file per quantization, each a whole model.
    file: Option<String>,
}

/// Longest organisation or model name.
const MAX_NAME: usize = 96;
/// Longest revision.
const MAX_REVISION: usize = 255;

impl HubRef {
    /// Parses `hf://ORG/NAME[@REVISION]`, or `hf://ORG/NAME[@REVISION]/FILE.gguf`
    /// for one GGUF file of the repository (a name ending in `.gguf`, in
    /// the repository's top directory).
    ///
    /// # Errors
    /// [`HubError::InvalidReference`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, HubError> {
        let bad = |reason| HubError::InvalidReference {
            shown: escape_for_log(s, 80),
            reason,
        };
        let rest = s
            .strip_prefix("hf://")
            .ok_or_else(|| bad("it does not start with hf://"))?;
        let (rest, file) = match rest.rsplit_once('/') {
            Some((head, last)) if head.contains('/') && vram_format::is_gguf_name(last) => {
                check_name(last).map_err(bad)?;
                (head, Some(last.to_owned()))
            }
            _ => (rest, None),
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (rest, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.is_empty() || parts.len() > 2 {
            return Err(bad("the model is ORG/NAME or NAME"));
        }
        for part in &parts {
            check_name(part).map_err(bad)?;
        }
        if let Some(rev) = revision {
            check_revision(rev).map_err(bad)?;
        }
        Ok(Self {
            repo_id: repo.to_owned(),
            revision: revision.map(str::to_owned),
            file,
        })
    }

    /// The GGUF file asked for, if the reference names one.
    #[must_use]
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// `ORG/NAME`.
    #[must_use]
    pub fn repo_id(&self) -> &str {
        &self.repo_id
    }

    /// The revision asked for, if any (the cache's `refs/main` otherwise).
    #[must_use]
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The model's folder in the cache: `models--ORG--NAME`.
    #[must_use]
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.repo_id.replace('/', "--"))
    }
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hf://{}", self.repo_id)?;
        if let Some(rev) = &self.revision {
            write!(f, "@{rev}")?;
        }
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("a name is 1 to 96 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("a name holds only letters, digits, '-', '_' and '.'");
    }
    if name.contains("--") || name.contains("..") || name.starts_with(['-', '.']) {
        return Err("a name may not contain '--' or '..' or start with '-' or '.'");
    }
    Ok(())
}

fn check_revision(rev: &str) -> Result<(), &'static str> {
    if rev.is_empty() || rev.len() > MAX_REVISION {
        return Err("a revision is 1 to 255 characters");
    }
    if !rev
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return Err("a revision holds only letters, digits, '-', '_', '.' and '/'");
    }
    if rev.contains("..") || rev.starts_with('/') || rev.ends_with('/') || rev.contains("//") {
        return Err("a revision may not contain '..' or empty path parts");
    }
    Ok(())
}

/// Whether `s` is a full commit hash (40 lower-case hex digits).
pub(crate) fn is_commit(s: &str) -> bool {
    vram_validation::hex::decode_lower::<20>(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hub_names_and_revisions() {
        let r = HubRef::parse("hf://org/name").unwrap();
        assert_eq!((r.repo_id(), r.revision()), ("org/name", None));
        assert_eq!(r.cache_folder(), "models--org--name");
        let r = HubRef::parse("hf://gpt2@refs/pr/1").unwrap();
        assert_eq!((r.repo_id(), r.revision()), ("gpt2", Some("refs/pr/1")));
        assert_eq!(r.to_string(), "hf://gpt2@refs/pr/1");
        let r = HubRef::parse("hf://Org/M-GGUF/M.Q4_1.gguf").unwrap();
        assert_eq!(
            (r.repo_id(), r.revision(), r.file()),
            ("Org/M-GGUF", None, Some("M.Q4_1.gguf"))
        );
        assert_eq!(r.to_string(), "hf://Org/M-GGUF/M.Q4_1.gguf");
        let r = HubRef::parse("hf://Org/M@refs/pr/1/M.gguf").unwrap();
        assert_eq!(
            (r.revision(), r.file()),
            (Some("refs/pr/1"), Some("M.gguf"))
        );
        assert!(HubRef::parse("hf://Org/M/..gguf").is_err());
        assert!(HubRef::parse("hf://M.gguf").is_ok_and(|r| r.file().is_none()));
    }

    #[test]
    fn refuses_what_could_leave_the_cache_or_is_not_a_hub_name() {
        for bad in [
            "org/name",
            "hf://",
            "hf://a/b/c",
            "hf://../x",
            "hf://org/..",
            "hf://org/na--me",
            "hf://org/name@../../etc",
            "hf://org/name@/abs",
            "hf://org/name@",
            "hf://org/n\u{1b}]0;x\u{7}",
            "hf://org/name@main\nforged",
            "hf://.hidden/x",
        ] {
            let e = HubRef::parse(bad).unwrap_err();
            let shown = e.to_string();
            assert!(
                !shown.contains('\u{1b}') && !shown.contains('\n'),
                "{shown}"
            );
        }
    }
}
