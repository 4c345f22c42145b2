//! `vram seal hf://ORG/NAME[@REV]/FILE.gguf`: one GGUF file of a cached
//! repository, found in the hub cache the environment names. Offline, always.

use crate::exit::CliError;
use vram_hub::{CachedFile, Expected, HubRef};
use vram_validation::Sha256Hex;

/// One GGUF file of a cached repository, `hf://ORG/NAME[@REV]/FILE.gguf`:
/// the cached file, the exact reference (`hf://ORG/NAME@COMMIT/FILE.gguf`)
/// and the SHA-256 its blob's name promises (checked in the sealing pass).
/// `None` for a reference that names no file.
pub(crate) fn gguf_file(
    text: &str,
    without_links: bool,
) -> Result<Option<(CachedFile, String, Option<Sha256Hex>)>, CliError> {
    let reference = HubRef::parse(text).map_err(vram_worker::WorkerError::from)?;
    let Some(name) = reference.file() else {
        return Ok(None);
    };
    if vram_format::split_part(name).is_some_and(|(_, _, count)| count > 1) {
        return Err(CliError::usage(format!(
            "{}: a part of a split GGUF model; its parts are sealed together: seal the repository              (hf://{}) or its snapshot directory",
            vram_validation::escape_for_log(text, 200),
            reference.repo_id()
        )));
    }
    let snapshot = vram_worker::hub::resolve(text, without_links)?;
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
    Ok(Some((
        cached,
        format!("{}/{name}", snapshot.reference()),
        expected,
    )))
}
