//! The command-line surface. Names and flags are a contract: scripts use them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  integrity or verification failure (corrupt bytes, invalid seal, audit log findings,
     --expect-sha256 digest or size mismatch)
  2  usage error or invalid input (bad flags, sizes, hex, missing or empty files)
  3  environment (no device, unreadable or too-permissive secret file, I/O errors,
     insufficient VRAM)

Keys: the worker secret comes from --secret-file, else $CREDENTIALS_DIRECTORY/vram-worker-secret,
else $VRAM_SECRET_FILE. The file must be owned by you (or root) and not readable by group or
others (chmod 600; in Kubernetes, defaultMode: 0400 on the secret volume). Symlinks to such a
file are followed, as secret volumes deliver them; every check is made on the opened file.
--secret-file - reads standard input, and --secret-file /dev/fd/N (or <(...)) a pipe: a pipe has
no owner or mode to check, only the size (32 bytes to 1 MiB).";

/// Seal model weights in GPU memory and prove before each inference that they are unchanged.
#[derive(Debug, Parser)]
#[command(name = "vram", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// No progress bars and only errors on stderr.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List devices (CUDA devices, or the mock when none is found) with memory figures.
    Devices(DevicesArgs),
    /// Chunk-tree digest of a file (and its plain SHA-256 in the same pass).
    Digest(DigestArgs),
    /// Seal files into device memory, verify them once, print their handles.
    Seal(SealArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Seal a synthetic model, verify it, corrupt it, catch the corruption, check the audit log.
    Demo(DemoArgs),
    /// Hashing, seal and verify throughput, with ratios against baselines measured in the same run.
    Bench(BenchArgs),
    /// Check every file of a model in the local Hugging Face cache against its blob name; seals nothing.
    VerifyCache(VerifyCacheArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyCacheArgs {
    /// The cached model: hf://ORG/NAME, or hf://ORG/NAME@REVISION (a branch, tag or commit; default main).
    pub(crate) model: String,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DevicesArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DigestArgs {
    /// File to digest.
    pub(crate) file: PathBuf,
    /// Leaf size: a power of two from 4KiB to 1GiB (e.g. 4KiB, 1MiB, 1GiB, or bytes).
    #[arg(long)]
    pub(crate) leaf_size: Option<String>,
    /// Also compute the plain whole-file SHA-256 (same pass over the bytes).
    #[arg(long)]
    pub(crate) sha256: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeviceArg {
    /// auto (CUDA when present, else the mock, said on stderr even with -q), mock,
    /// cuda (every CUDA device; exit 3 when there is none), or cuda:N.
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
}

#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    /// Model files to seal (one shard each), or hf://ORG/NAME(@REVISION): the
    /// *.safetensors files of a model in the local Hugging Face cache, each
    /// checked against the SHA-256 its blob is named by.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// Model reference recorded in the seal (default: `file:<name>`): a URI such as
    /// hf://ORG/MODEL@REV/FILE, s3://BUCKET/KEY, gs://BUCKET/KEY or file:///ABS/PATH, an OCI
    /// reference (ghcr.io/ORG/MODEL:TAG, REGISTRY/NS/MODEL@sha256:HEX) or a relative name, UTF-8
    /// allowed; percent escapes are decoded for the checks (no `..` segment, no absolute path
    /// other than file:///, no control or bidirectional-formatting characters).
    #[arg(long)]
    pub(crate) model_ref: Option<String>,
    /// Expected plain SHA-256 of the one file sealed, checked in the same pass; a mismatch
    /// exits 1. Accepted: 64 hex digits (any case); sha256:HEX; a sha256sum line (`HEX  NAME`
    /// or `HEX *NAME`, the name ignored); an LFS pointer's `oid sha256:HEX` line; an OCI
    /// descriptor's `"digest": "sha256:HEX"`; or @PATH, a file holding a Git LFS pointer, the
    /// sha256sum line of one file, or an OCI descriptor (JSON). A size the pointer or the
    /// descriptor states must be the file's size too (else exit 1).
    #[arg(long)]
    pub(crate) expect_sha256: Option<String>,
    /// Worker secret file: owner-only (chmod 600 or 400), symlinks to it followed; `-` reads
    /// standard input, /dev/fd/N a pipe.
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Append audit records to this JSON-lines log (default: kept in memory).
    #[arg(long)]
    pub(crate) audit_log: Option<PathBuf>,
    /// Verification after sealing: full or sampled:K (K at or above the leaf count is a full verification).
    #[arg(long, default_value = "full")]
    pub(crate) verify: String,
    /// Keep the shards resident and scrubbing until SIGINT/SIGTERM.
    #[arg(long)]
    pub(crate) hold: bool,
    /// Scrub rate while holding, bytes per second (e.g. 256MiB; at least 1MiB).
    #[arg(long, requires = "hold", default_value = "256MiB")]
    pub(crate) scrub_rate: String,
    /// Leaf size of the tree digest (default: 64KiB on CUDA devices, 1MiB otherwise).
    #[arg(long)]
    pub(crate) leaf_size: Option<String>,
    /// Hash the leaves on the device after the upload (64 random leaves are
    /// cross-checked against the file); faster on a GPU, see the README.
    #[arg(long)]
    pub(crate) hash_on_device: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify an audit log chain (files in order); exit 0 only when intact.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditVerifyArgs {
    /// Log files, oldest first; a single path also takes its rotated segments (PATH.1, PATH.2, ...).
    #[arg(required = true)]
    pub(crate) logs: Vec<PathBuf>,
    /// Worker secret file the log's audit key derives from (same rules as for seal; `-` reads
    /// standard input).
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Last known good head, SEQ:HASH or SEQ:HASH:LOG_ID (as printed by an
    /// earlier verification), to detect a deleted tail or another log in its place.
    #[arg(long)]
    pub(crate) checkpoint: Option<String>,
    /// An empty log (no records at all) is expected: report it as intact.
    /// Without this, an empty log exits 1: a log always begins with its
    /// genesis record, so an empty one was wiped or never written.
    #[arg(long)]
    pub(crate) allow_empty: bool,
    /// Findings shown in full; the rest are counted (the verdict and the
    /// counts are exact whatever this is). A run of consecutive bad lines is
    /// one finding.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) max_findings: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Size of the synthetic model.
    #[arg(long, default_value = "256MiB")]
    pub(crate) size: String,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// Machine-readable summary.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Size of the buffers and files measured.
    #[arg(long, default_value = "1GiB")]
    pub(crate) size: String,
    /// Size of the large shard for the sampled-verify comparison.
    #[arg(long, default_value = "4GiB")]
    pub(crate) sampled_size: String,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}
