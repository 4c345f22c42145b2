//! The digest of one file (or standard input): what `vram digest`, its
//! `--check` and `vram bench` share.

use crate::exit::{io_error, shown_path, CliError};
use indicatif::ProgressBar;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Instant;
use vram_core::source::{stream_chunks, MappedFile};
use vram_core::StreamError;
use vram_crypto::{
    hash_alongside, leaf_hashes_from, LeafHashes, LeafSize, Sha256Digest, Sha256Stream,
    TreeDescriptor, TreeHasher,
};
use vram_residency::DEFAULT_STAGING_BYTES;

/// What one pass over a file found.
pub(crate) struct Digested {
    pub(crate) leaves: LeafHashes,
    pub(crate) plain: Option<Sha256Digest>,
    pub(crate) secs: f64,
}

/// Who named the file to digest, which decides what it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NamedBy {
    /// The operator, on the command line: a pipe or a device is read to its
    /// end (`vram digest <(zcat model.gz)`), as `sha256sum` reads it.
    Operator,
    /// A manifest line (`vram digest --check`): only a regular file. A FIFO
    /// listed there (or put in place of a listed file) would block the check
    /// for ever; it is opened without blocking and refused.
    Manifest,
}

/// The leaf hashes (and with `sha256` the plain SHA-256) of the file at
/// `path`, or of standard input for `-`.
pub(crate) fn digest_path(
    path: &Path,
    leaf: LeafSize,
    sha256: bool,
    quiet: bool,
    named_by: NamedBy,
) -> Result<Digested, CliError> {
    let start = Instant::now();
    if path.as_os_str() == "-" {
        let pb = crate::progress::bar(0, "digest", quiet);
        let (leaves, plain) = stream(std::io::stdin(), path, leaf, sha256, &pb)?;
        pb.finish_and_clear();
        return Ok(Digested {
            leaves,
            plain,
            secs: start.elapsed().as_secs_f64(),
        });
    }
    let file = match named_by {
        NamedBy::Operator => File::open(path),
        // O_NONBLOCK: opening a FIFO with no writer returns at once instead
        // of waiting for one. It changes nothing for a regular file (reads
        // and maps of regular files never block on Linux), the only kind
        // read on this path.
        NamedBy::Manifest => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path),
    }
    .map_err(|e| io_error(path, &e))?;
    let meta = file.metadata().map_err(|e| io_error(path, &e))?;
    if meta.is_dir() {
        return Err(CliError::usage(format!(
            "{}: is a directory",
            shown_path(path)
        )));
    }
    if named_by == NamedBy::Manifest && !meta.is_file() {
        return Err(CliError::usage(format!(
            "{}: is {}; a manifest lists regular files only (digest a pipe or a device by \
             naming it on the command line)",
            shown_path(path),
            vram_hub::file_kind(meta.file_type())
        )));
    }
    let pb = crate::progress::bar(meta.len(), "digest", quiet);
    let mapped = if meta.is_file() {
        match MappedFile::open(&file) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::debug!(error = %e, "cannot map the file; reading it instead");
                None
            }
        }
    } else {
        None
    };
    let (leaves, plain) = match mapped {
        Some(m) => digest_mapped(m.bytes(), path, leaf, sha256, &pb)?,
        None if sha256 || !meta.is_file() => stream(file, path, leaf, sha256, &pb)?,
        None => (
            digest_file_parallel(&file, path, meta.len(), leaf, &pb)?,
            None,
        ),
    };
    pb.finish_and_clear();
    Ok(Digested {
        leaves,
        plain,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// One ordered pass through the tree hasher (and the plain SHA-256).
fn stream(
    reader: impl std::io::Read + Send,
    path: &Path,
    leaf: LeafSize,
    sha256: bool,
    pb: &ProgressBar,
) -> Result<(LeafHashes, Option<Sha256Digest>), CliError> {
    let mut hasher = TreeHasher::new(leaf);
    if sha256 {
        hasher = hasher.with_plain_sha256();
    }
    stream_chunks(reader, None, DEFAULT_STAGING_BYTES, |_, chunk| {
        hasher.update(chunk);
        pb.inc(chunk.len() as u64);
        Ok::<(), StreamError>(())
    })
    .map_err(|e| CliError::env(format!("{}: {e}", shown_path(path))))?;
    let out = hasher.finish();
    Ok((out.leaves, out.plain_sha256))
}

/// Bytes of a mapped file hashed between two progress updates (rounded up to
/// whole leaves): the bar moves on a 100 GB file, and a segment still keeps
/// every core and lane busy.
const MAPPED_SEGMENT: usize = 256 << 20;

/// Leaf hashes (and with `sha256` the plain SHA-256) of a mapped file, one
/// segment of whole leaves at a time: the leaves on every core, the plain
/// stream beside them on this thread.
fn digest_mapped(
    bytes: &[u8],
    path: &Path,
    leaf: LeafSize,
    sha256: bool,
    pb: &ProgressBar,
) -> Result<(LeafHashes, Option<Sha256Digest>), CliError> {
    digest_segments(bytes, path, leaf, sha256, MAPPED_SEGMENT, pb)
}

/// [`digest_mapped`] with segments of at least `segment` bytes.
fn digest_segments(
    bytes: &[u8],
    path: &Path,
    leaf: LeafSize,
    sha256: bool,
    segment: usize,
    pb: &ProgressBar,
) -> Result<(LeafHashes, Option<Sha256Digest>), CliError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let leaf_bytes = usize::try_from(leaf.bytes()).unwrap_or(usize::MAX);
    let segment = segment
        .div_ceil(leaf_bytes)
        .max(1)
        .saturating_mul(leaf_bytes);
    let mut plain = sha256.then(Sha256Stream::new);
    let mut hashes = Vec::new();
    for part in bytes.chunks(segment) {
        let hashed = match plain.as_mut() {
            Some(stream) => hash_alongside(leaf, part, || {
                stream.update(part);
                Ok::<(), std::convert::Infallible>(())
            }),
            None => Ok(vram_crypto::leaf_hashes(part, leaf).into_parts().1),
        };
        match hashed {
            Ok(h) => hashes.extend(h),
            Err(never) => match never {},
        }
        pb.inc(part.len() as u64);
    }
    let leaves = LeafHashes::from_parts(TreeDescriptor::new(leaf, len), hashes)
        .map_err(|e| CliError::env(format!("{}: {e}", shown_path(path))))?;
    Ok((leaves, plain.map(Sha256Stream::finish)))
}

/// Leaf hashes of a regular file of `len` bytes: one contiguous leaf range per
/// core, each read with positional reads into its own staging buffer
/// ([`leaf_hashes_from`]). The file must not change while it is read; a short
/// read (the file shrank) is an error.
pub(crate) fn digest_file_parallel(
    file: &File,
    path: &Path,
    len: u64,
    leaf: LeafSize,
    pb: &ProgressBar,
) -> Result<LeafHashes, CliError> {
    use std::os::unix::fs::FileExt;
    leaf_hashes_from(
        leaf,
        len,
        DEFAULT_STAGING_BYTES,
        |offset, buf: &mut [u8]| {
            file.read_exact_at(buf, offset)
                .map_err(|e| io_error(path, &e))?;
            pb.inc(buf.len() as u64);
            Ok(())
        },
    )
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// Any segment size gives the digests of the whole input, and the bar
    /// reaches its length.
    #[test]
    fn segments_of_a_mapped_file_give_the_whole_file_s_digests() {
        let data: Vec<u8> = (0..200_003u32).map(|i| (i % 241) as u8).collect();
        let leaf = LeafSize::new(4096).unwrap();
        let tree = vram_crypto::tree_digest(&data, leaf);
        for segment in [1, 4096, 10_000, 1 << 20] {
            for sha in [false, true] {
                let pb = ProgressBar::hidden();
                pb.set_length(data.len() as u64);
                let (leaves, plain) =
                    digest_segments(&data, Path::new("x"), leaf, sha, segment, &pb).unwrap();
                assert_eq!(leaves.root(), tree, "segment {segment}");
                assert_eq!(plain, sha.then(|| vram_crypto::sha256(&data)));
                assert_eq!(pb.position(), data.len() as u64);
            }
        }
        let pb = ProgressBar::hidden();
        let (leaves, plain) = digest_segments(&[], Path::new("x"), leaf, true, 7, &pb).unwrap();
        assert_eq!(leaves.root(), vram_crypto::tree_digest(&[], leaf));
        assert_eq!(plain, Some(vram_crypto::sha256(&[])));
    }
}
