//! `vram digest FILE`: the chunk-tree digest of a file.
//!
//! Without `--sha256`, each core reads its own contiguous range of leaves with
//! positional reads and hashes it across the SIMD lanes, so file reads and
//! hashing overlap across cores with no thread starving another. With
//! `--sha256` the plain digest needs one ordered stream over the bytes, so the
//! file is streamed once through the tree hasher (capped by one core's SHA-256
//! rate).

use super::{gbps, leaf_arg};
use crate::cli::DigestArgs;
use crate::exit::{io_error, shown_path, CliError};
use indicatif::ProgressBar;
use std::fs::File;
use std::path::Path;
use std::time::Instant;
use vram_residency::vram_crypto::{backend, leaf_hashes_from, LeafHashes, LeafSize, TreeHasher};
use vram_residency::vram_validation::OutputLine;
use vram_residency::{stream_chunks, DEFAULT_STAGING_BYTES};

pub(crate) fn run(args: &DigestArgs, quiet: bool) -> Result<(), CliError> {
    let leaf = leaf_arg(args.leaf_size.as_deref())?.unwrap_or(LeafSize::DEFAULT);
    let file = File::open(&args.file).map_err(|e| io_error(&args.file, &e))?;
    let meta = file.metadata().map_err(|e| io_error(&args.file, &e))?;
    if meta.is_dir() {
        return Err(CliError::usage(format!(
            "{}: is a directory",
            shown_path(&args.file)
        )));
    }
    let pb = crate::progress::bar(meta.len(), "digest", quiet);
    let start = Instant::now();
    let (leaves, plain) = if args.sha256 || !meta.is_file() {
        let mut hasher = TreeHasher::new(leaf);
        if args.sha256 {
            hasher = hasher.with_plain_sha256();
        }
        stream_chunks(file, None, DEFAULT_STAGING_BYTES, |_, chunk| {
            hasher.update(chunk);
            pb.inc(chunk.len() as u64);
            Ok(())
        })
        .map_err(|e| CliError::env(format!("{}: {e}", shown_path(&args.file))))?;
        let out = hasher.finish();
        (out.leaves, out.plain_sha256)
    } else {
        (
            digest_file_parallel(&file, &args.file, meta.len(), leaf, &pb)?,
            None,
        )
    };
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let tree = leaves.root();
    let bytes = tree.descriptor.total_len;
    if args.json {
        let mut v = serde_json::json!({
            "file": args.file.display().to_string(),
            "bytes": bytes,
            "leaf_size": leaf.bytes(),
            "leaf_count": tree.descriptor.leaf_count(),
            "tree_digest": tree.root.to_string(),
            "format_version": tree.descriptor.version,
            "backend": backend(),
            "seconds": secs,
            "gb_per_s": gbps(bytes, secs),
        });
        if let (Some(sha), Some(obj)) = (plain, v.as_object_mut()) {
            obj.insert("sha256".into(), sha.to_string().into());
        }
        println!("{v:#}");
    } else {
        // `DIGEST  NAME`, the name escaped as sha256sum does (a leading `\`
        // marks an escaped line): a hostile name cannot add a line or drive
        // the terminal. JSON above carries the name exactly.
        let name = args.file.to_string_lossy();
        let mut line = OutputLine::new();
        line.push(&format!("{}  ", tree.root)).field(&name);
        println!("{line}");
        if let Some(sha) = plain {
            let mut line = OutputLine::new();
            line.push(&format!("sha256 {sha}  ")).field(&name);
            println!("{line}");
        }
        if !quiet {
            eprintln!(
                "{} bytes, leaf {} ({} leaves), {:.2} GB/s, backend {}",
                bytes,
                leaf,
                tree.descriptor.leaf_count(),
                gbps(bytes, secs),
                backend()
            );
        }
    }
    Ok(())
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
