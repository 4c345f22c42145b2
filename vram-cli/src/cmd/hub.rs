//! `vram seal hf://ORG/NAME[@REV]/FILE.gguf`: one GGUF file of a cached
//! repository (or the split model one of its parts names), found in the hub
//! cache the environment names. Offline, always.

use crate::exit::CliError;
use vram_hub::{CachedFile, Expected, HubRef};
use vram_validation::Sha256Hex;

/// What `hf://ORG/NAME[@REV]/FILE.gguf` names in the cache.
pub(crate) enum CachedGguf {
    /// One GGUF file: the cached file, the exact reference
    /// (`hf://ORG/NAME@COMMIT/FILE.gguf`) and the SHA-256 its blob's name
    /// promises (checked in the sealing pass).
    File(CachedFile, String, Option<Sha256Hex>),
    /// A part of a split model: all its parts, as one model, each with the
    /// SHA-256 its blob's name promises.
    Split(vram_worker::ModelLocation),
}

/// One GGUF file of a cached repository, `hf://ORG/NAME[@REV]/FILE.gguf`,
/// or the split model one of its parts names. `None` for a reference that
/// names no file.
pub(crate) fn gguf_file(text: &str, without_links: bool) -> Result<Option<CachedGguf>, CliError> {
    let reference = HubRef::parse(text).map_err(vram_worker::WorkerError::from)?;
    let Some(name) = reference.file() else {
        return Ok(None);
    };
    let snapshot = vram_worker::hub::resolve(text, without_links)?;
    if vram_format::split_part(name).is_some_and(|(_, _, count)| count > 1) {
        let location = vram_worker::ModelLocation::gguf_parts_in_cache(&snapshot, name)?;
        return Ok(Some(CachedGguf::Split(location)));
    }
    let cached = snapshot
        .files
        .iter()
        .find(|f| f.name == name)
        .cloned()
        .ok_or_else(|| {
            CliError::usage(format!(
                "hub cache: {} has no file {}",
                snapshot.reference(),
                vram_validation::escape_for_log(name, 200)
            ))
        })?;
    let expected = match cached.expected {
        Some(Expected::Sha256(sha)) => Some(Sha256Hex::from_bytes(&sha)),
        _ => None,
    };
    Ok(Some(CachedGguf::File(
        cached,
        format!("{}/{name}", snapshot.reference()),
        expected,
    )))
}
