//! `vram digest FILE`: the chunk-tree digest, streamed.

use super::{gbps, leaf_arg};
use crate::cli::DigestArgs;
use crate::exit::{io_error, CliError};
use std::time::Instant;
use vram_residency::vram_crypto::{backend, TreeHasher};
use vram_residency::{stream_chunks, DEFAULT_STAGING_BYTES};

pub(crate) fn run(args: &DigestArgs, quiet: bool) -> Result<(), CliError> {
    let leaf = leaf_arg(args.leaf_size.as_deref())?;
    let file = std::fs::File::open(&args.file).map_err(|e| io_error(&args.file, &e))?;
    let meta = file.metadata().map_err(|e| io_error(&args.file, &e))?;
    if meta.is_dir() {
        return Err(CliError::usage(format!(
            "{}: is a directory",
            args.file.display()
        )));
    }
    let pb = crate::progress::bar(meta.len(), "digest", quiet);
    let mut hasher = TreeHasher::new(leaf);
    if args.sha256 {
        hasher = hasher.with_plain_sha256();
    }
    let start = Instant::now();
    let bytes = stream_chunks(file, None, DEFAULT_STAGING_BYTES, |_, chunk| {
        hasher.update(chunk);
        pb.inc(chunk.len() as u64);
        Ok(())
    })
    .map_err(|e| CliError::env(format!("{}: {e}", args.file.display())))?;
    pb.finish_and_clear();
    let out = hasher.finish();
    let secs = start.elapsed().as_secs_f64();
    let tree = out.leaves.root();
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
        if let (Some(sha), Some(obj)) = (out.plain_sha256, v.as_object_mut()) {
            obj.insert("sha256".into(), sha.to_string().into());
        }
        println!("{v:#}");
    } else {
        println!("{}  {}", tree.root, args.file.display());
        if let Some(sha) = out.plain_sha256 {
            println!("sha256 {}  {}", sha, args.file.display());
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
