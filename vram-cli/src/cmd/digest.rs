//! `vram digest FILE...`: the chunk-tree digest of files, as manifest lines
//! (`crate::manifest`) that `vram digest --check` reads back.
//!
//! A regular file is mapped read-only (`vram_core::source::MappedFile`) and its
//! leaves hashed where the page cache holds them, on every core and SIMD lane,
//! with no copy into a buffer first. With `--sha256` the plain digest (one
//! ordered stream, one core's SHA-256 rate) runs on this thread while the other
//! cores hash the leaves, and this thread joins them when it is done. A file
//! that cannot be mapped is read with positional reads by every core instead;
//! standard input and other streams go through the tree hasher chunk by chunk.
//!
//! A file truncated by another process while it is mapped ends this process
//! with `SIGBUS`, as with `b3sum`; a digest of a file that changes while it is
//! read describes no single state of it either way.

use crate::cli::DigestArgs;
use crate::exit::{one_safe_line, CliError};
use crate::figures::gbps;
use crate::manifest::{leaf_text, sha256_line, tree_line, TREE_TAG};
use vram_crypto::{backend, LeafSize};

mod file;

pub(crate) use file::{digest_file_parallel, digest_path, Digested, NamedBy};

pub(crate) fn run(args: &DigestArgs, quiet: bool) -> Result<(), CliError> {
    if args.check {
        return super::check::run(args, quiet);
    }
    let leaf = args.leaf_size.unwrap_or(LeafSize::DEFAULT);
    let several = args.files.len() > 1;
    let mut failed: Vec<CliError> = Vec::new();
    for path in &args.files {
        let name = path.to_string_lossy();
        match digest_path(path, leaf, args.sha256, quiet, NamedBy::Operator) {
            Ok(d) => print_one(args, &name, leaf, &d, quiet),
            Err(e) => {
                if args.json {
                    // One line per file in the stream, the failed ones too.
                    println!(
                        "{}",
                        serde_json::json!({ "file": name, "error": e.to_json() })
                    );
                }
                if several {
                    eprintln!("vram: error: {}", one_safe_line(&e.message));
                }
                failed.push(e);
            }
        }
    }
    let mut failed = failed.into_iter();
    let Some(first) = failed.next() else {
        return Ok(());
    };
    let err = if several {
        let n = failed.count().saturating_add(1);
        CliError {
            message: format!("{n} of {} file(s) could not be digested", args.files.len()),
            ..first
        }
    } else {
        first
    };
    Err(if args.json {
        err.reported_in_json()
    } else {
        err
    })
}

fn print_one(args: &DigestArgs, name: &str, leaf: LeafSize, d: &Digested, quiet: bool) {
    let tree = d.leaves.root();
    let bytes = tree.descriptor.total_len;
    if args.json {
        // One compact object per line: the stream is a manifest `--check` reads.
        let mut v = serde_json::json!({
            "file": name,
            "algorithm": TREE_TAG,
            "bytes": bytes,
            "leaf_size": leaf.bytes(),
            "leaf_count": tree.descriptor.leaf_count(),
            "tree_digest": tree.root.to_string(),
            "format_version": tree.descriptor.version,
            "backend": backend(),
            "seconds": d.secs,
            "gb_per_s": gbps(bytes, d.secs),
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(sha) = &d.plain {
                obj.insert("sha256".into(), sha.to_string().into());
            }
            if args.leaves {
                let leaves: Vec<String> =
                    d.leaves.hashes().iter().map(ToString::to_string).collect();
                obj.insert("leaves".into(), leaves.into());
            }
        }
        println!("{v}");
    } else {
        // Manifest lines (see `crate::manifest`), the name escaped as
        // sha256sum does (a leading `\` marks an escaped line): a hostile
        // name cannot add a line or drive the terminal. JSON carries the
        // name exactly.
        println!("{}", tree_line(leaf, &tree.root, name));
        if let Some(sha) = &d.plain {
            println!("{}", sha256_line(sha, name));
        }
        if !quiet {
            eprintln!(
                "{} bytes, leaf {} ({} leaves), {:.2} GB/s, backend {}",
                bytes,
                leaf_text(leaf),
                tree.descriptor.leaf_count(),
                gbps(bytes, d.secs),
                backend()
            );
        }
    }
}
