//! The command-line surface. Names and flags are a contract: scripts use them.

use crate::args;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use vram_crypto::LeafSize;
use vram_residency::VerifyPolicy;
use vram_validation::{ExpectedDigest, ModelRef};
use vram_worker::DeviceSpec;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  integrity or verification failure (corrupt bytes, invalid seal, audit log findings,
     --expect-sha256 digest or size mismatch)
  2  usage error or invalid input (bad flags, sizes, hex, missing or empty files)
  3  environment (no device, unreadable or too-permissive secret file, I/O errors,
     insufficient VRAM)
With --json, an error is also JSON on stdout: an error object with code (the exit code),
class (usage, integrity or environment) and message, inside the command's own document
when it prints one.

Keys: the worker secret comes from --secret-file, else $CREDENTIALS_DIRECTORY/vram-worker-secret,
else $VRAM_SECRET_FILE. The file must be owned by you (or root) and not readable by group or
others (chmod 600; in Kubernetes, defaultMode: 0400 on the secret volume; the 0440 a pod's
fsGroup makes of it is accepted when that group is yours alone). Symlinks to such a
file are followed, as secret volumes deliver them; every check is made on the opened file.
--secret-file - reads standard input, and --secret-file /dev/fd/N (or <(...)) a pipe: a pipe has
no owner or mode to check, only the size (32 bytes to 1 MiB).";

/// Seal model weights in GPU memory and prove before each inference that they are unchanged.
#[derive(Debug, Parser)]
#[command(name = "vram", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// No progress bars and only errors on stderr.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Parses a command line (the first item is the program name), as the
    /// binary parses its own: help and version requests are errors too.
    ///
    /// # Errors
    /// clap's error for a command line it refuses (or answers with help).
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List devices (CUDA devices, or the mock when none is found) with memory figures.
    Devices(DevicesArgs),
    /// Chunk-tree digests of files as manifest lines; with -c, check files against a manifest.
    Digest(DigestArgs),
    /// Seal files into device memory, verify them once, print their handles.
    Seal(Box<SealArgs>),
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

impl Command {
    /// Whether the command was asked for `--json`: its errors are then a JSON
    /// `error` object on stdout too.
    pub(crate) fn json(&self) -> bool {
        match self {
            Self::Devices(a) => a.json,
            Self::Digest(a) => a.json,
            Self::Seal(a) => a.json,
            Self::Audit(a) => a.json(),
            Self::Demo(a) => a.json,
            Self::Bench(a) => a.json,
            Self::VerifyCache(a) => a.json,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct VerifyCacheArgs {
    /// The cached model: hf://ORG/NAME, or hf://ORG/NAME@REVISION (a branch, tag or commit; default main).
    pub(crate) model: String,
    /// The Hugging Face cache was written without links (copies in
    /// snapshots/COMMIT instead of links into blobs/, as on Windows without
    /// developer mode). Its plain files are then taken with no digest to be
    /// checked against (said on stderr); without this flag a plain file in a
    /// snapshot is refused by name (exit 1): nothing says what it should hold.
    #[arg(long)]
    pub(crate) cache_without_links: bool,
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
#[command(after_help = DIGEST_HELP)]
pub(crate) struct DigestArgs {
    /// Files to digest (`-` is standard input); with --check, manifests to check.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Read manifests (lines as `vram digest` prints them, or its --json lines)
    /// and check every file they name; FAILED files with their corrupt byte ranges.
    #[arg(short = 'c', long, conflicts_with_all = ["leaf_size", "sha256", "leaves"])]
    pub(crate) check: bool,
    /// Leaf size: a power of two from 4KiB to 1GiB (e.g. 4KiB, 1MiB, 1GiB, or bytes).
    #[arg(long, value_parser = args::leaf_size)]
    pub(crate) leaf_size: Option<LeafSize>,
    /// Also compute the plain whole-file SHA-256 (same pass over the bytes).
    #[arg(long)]
    pub(crate) sha256: bool,
    /// With --json: put every leaf hash into each line, so that --check can
    /// name the corrupt byte ranges (and safetensors tensors) of a changed file.
    #[arg(long, requires = "json")]
    pub(crate) leaves: bool,
    /// Machine-readable output: one JSON object per file and line (a manifest
    /// --check reads); with --check, one JSON document.
    #[arg(long)]
    pub(crate) json: bool,
    /// With --check: print nothing on stdout (nor the warnings); the exit code says it all.
    #[arg(long, requires = "check", conflicts_with = "json")]
    pub(crate) status: bool,
    /// With --check: skip listed files that do not exist (a manifest where none exists fails).
    #[arg(long, requires = "check")]
    pub(crate) ignore_missing: bool,
    /// With --check: exit 1 when a manifest has an improperly formatted line.
    #[arg(long, requires = "check")]
    pub(crate) strict: bool,
}

const DIGEST_HELP: &str = r"Manifest lines: `vram-tree-sha256:LEAF:ROOT  NAME` (tree digest format 1, LEAF as
4KiB..1GiB, ROOT 64 hex), and with --sha256 also `sha256:HEX  NAME`. A NAME that needed
escaping (\\, \n, \r, \u{..}) starts its line with `\`, as sha256sum does.

--check prints `NAME: OK`, `NAME: FAILED` (with the corrupt byte ranges when the manifest
has leaf hashes, and the tensors in them for a safetensors file) or `NAME: FAILED open or
read`; exit 0 when every file is OK, 1 when any failed or could not be read, or when a
manifest has no well-formed line (lines that are not are counted on stderr), as
`sha256sum -c` does. Its flags too: -q/--quiet leaves out the OK lines, --status prints
nothing, --ignore-missing skips files that do not exist, --strict fails on a malformed line.

A regular file is hashed through a read-only memory map, as b3sum does: if another process
truncates it meanwhile, the kernel ends vram with SIGBUS (no digest is printed). Standard
input (`-`) and other streams are read instead.";

#[derive(Debug, Args)]
pub(crate) struct DeviceArg {
    /// auto (CUDA when present, else the mock, said on stderr even with -q), mock,
    /// cuda (every CUDA device; exit 3 when there is none), or cuda:N.
    #[arg(long, default_value = "auto", value_parser = args::device_arg)]
    pub(crate) device: DeviceSpec,
}

#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    /// Model files to seal (one shard each); or one snapshot directory, or
    /// hf://ORG/NAME(@REVISION) in the local Hugging Face cache, sealed as
    /// one model: model.safetensors or the shards its index names (each
    /// cached blob checked against the SHA-256 it is named by), with the
    /// config and tokenizer files bound to the seals.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// Model reference recorded in the seal (default: `file:<name>`): a URI such as
    /// hf://ORG/MODEL@REV/FILE, s3://BUCKET/KEY, gs://BUCKET/KEY or file:///ABS/PATH, an OCI
    /// reference (ghcr.io/ORG/MODEL:TAG, REGISTRY/NS/MODEL@sha256:HEX) or a relative name, UTF-8
    /// allowed; percent escapes are decoded for the checks (no `..` segment, no absolute path
    /// other than file:///, no control or bidirectional-formatting characters).
    #[arg(long, value_parser = args::model_ref)]
    pub(crate) model_ref: Option<ModelRef>,
    /// Expected plain SHA-256 of the one file sealed, checked in the same pass; a mismatch
    /// exits 1. Accepted: 64 hex digits (any case); sha256:HEX; a sha256sum line (`HEX  NAME`
    /// or `HEX *NAME`, the name ignored); an LFS pointer's `oid sha256:HEX` line; an OCI
    /// descriptor's `"digest": "sha256:HEX"`; or @PATH, a regular file (not a symbolic link) holding a Git LFS pointer, the
    /// sha256sum line of one file, or an OCI descriptor (JSON). A size the pointer or the
    /// descriptor states must be the file's size too (else exit 1).
    #[arg(long, value_parser = args::expected_arg)]
    pub(crate) expect_sha256: Option<ExpectedDigest>,
    /// The publisher's OpenSSF model_signing signature of the one model
    /// given (a directory, or a single file): a Sigstore bundle made by
    /// `model_signing sign key`. The signature is verified first; then every
    /// file is sealed with the SHA-256 the signature gives it, checked in the
    /// pass that copies it to the device. A missing, extra or changed file
    /// (or a symlink the signature does not allow) seals nothing and exits 1.
    /// Certificate and keyless bundles are refused (exit 2).
    #[arg(long, value_name = "BUNDLE", requires = "public_key")]
    pub(crate) model_signature: Option<PathBuf>,
    /// The publisher's public key for --model-signature (PEM; P-256, P-384
    /// or P-521).
    #[arg(long, value_name = "PEM", requires = "model_signature")]
    pub(crate) public_key: Option<PathBuf>,
    /// The Hugging Face cache was written without links (copies in
    /// snapshots/COMMIT instead of links into blobs/, as on Windows without
    /// developer mode). Its plain files are then taken with no digest to be
    /// checked against (said on stderr); without this flag a plain file in a
    /// snapshot is refused by name (exit 1): nothing says what it should hold.
    #[arg(long)]
    pub(crate) cache_without_links: bool,
    /// Worker secret file: owner-only (chmod 600 or 400), symlinks to it followed; `-` reads
    /// standard input, /dev/fd/N a pipe.
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Append audit records to this JSON-lines log (default: kept in memory).
    #[arg(long)]
    pub(crate) audit_log: Option<PathBuf>,
    /// Start a new audit log segment (PATH.1, PATH.2, ...) once the current
    /// one holds this much (e.g. 64MiB, the default).
    #[arg(long, requires = "audit_log", value_name = "SIZE", value_parser = args::Size)]
    pub(crate) audit_segment_size: Option<u64>,
    /// Write a signed checkpoint into the audit log every N records (0: not by count).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) audit_checkpoint_records: u64,
    /// ... and with the first record this long after the last checkpoint (e.g. 60s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = args::Duration)]
    pub(crate) audit_checkpoint_interval: std::time::Duration,
    /// Verification after sealing: full or sampled:K (K at or above the leaf count is a full verification).
    #[arg(long, default_value = "full", value_parser = args::verify_arg)]
    pub(crate) verify: VerifyPolicy,
    /// Keep the shards resident and scrubbing until SIGINT/SIGTERM (exit 0
    /// after releasing them). Exits 1 as soon as a held shard is found
    /// compromised, after auditing it and releasing every shard, so that a
    /// supervisor restarts the service or alerts.
    #[arg(long)]
    pub(crate) hold: bool,
    /// While holding, serve metrics in the Prometheus text format at
    /// http://ADDR/metrics: a PORT alone listens on 127.0.0.1 (e.g. 19464),
    /// or HOST:PORT with an IP address; port 0 picks a free port, printed on
    /// stderr. GET and HEAD /metrics and GET /health only; request heads of
    /// at most 8 KiB, per-connection deadlines, at most 128 connections.
    #[arg(long, requires = "hold", value_name = "ADDR")]
    pub(crate) metrics_listen: Option<String>,
    /// While holding, write the same metrics to PATH (a node_exporter
    /// textfile, e.g. /run/vram-guard/vram.prom), replaced atomically every
    /// --metrics-interval and once more after the release. Its directory must
    /// exist and be writable (checked at start, exit 3), and not writable by
    /// other users unless sticky.
    #[arg(long, requires = "hold", value_name = "PATH")]
    pub(crate) metrics_file: Option<PathBuf>,
    /// How often --metrics-file is rewritten (e.g. 15s, 1m).
    #[arg(
        long,
        requires = "metrics_file",
        default_value = "15s",
        value_name = "DURATION",
        value_parser = args::Duration
    )]
    pub(crate) metrics_interval: std::time::Duration,
    /// Scrub rate while holding, bytes per second (e.g. 256MiB; at least 1MiB).
    #[arg(long, requires = "hold", default_value = "256MiB", value_parser = args::Size)]
    pub(crate) scrub_rate: u64,
    /// Leaf size of the tree digest (default: 64KiB on CUDA devices, 1MiB otherwise).
    #[arg(long, value_parser = args::leaf_size)]
    pub(crate) leaf_size: Option<LeafSize>,
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
    /// Show records as a table (or JSON lines), filtered; verified with the secret.
    Show(AuditShowArgs),
    /// Print the verified head as SEQ:HASH:LOG_ID, the form --checkpoint takes.
    Head(AuditHeadArgs),
    /// Print the public key (PEM) that verifies this worker's signed audit
    /// checkpoints without the secret, and its fingerprint.
    PublicKey(AuditPublicKeyArgs),
}

impl AuditCommand {
    fn json(&self) -> bool {
        match self {
            Self::Verify(a) => a.json,
            Self::Show(a) => a.json,
            Self::Head(a) => a.json,
            Self::PublicKey(a) => a.json,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AuditShowArgs {
    /// Log files, oldest first; a single path also takes its rotated segments (PATH.1, PATH.2, ...).
    #[arg(required = true)]
    pub(crate) logs: Vec<PathBuf>,
    /// Worker secret file: verify the chain while showing it (without one,
    /// records are shown unverified, and stderr says so).
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Only events of this type (e.g. seal_verification_failed); repeatable.
    #[arg(long = "event", value_name = "TYPE")]
    pub(crate) events: Vec<String>,
    /// Only records about this shard id.
    #[arg(long, value_name = "ID")]
    pub(crate) shard: Option<String>,
    /// Only records at or after this time (RFC 3339 in UTC, e.g. 2026-01-31T12:00:00Z, or a date).
    #[arg(long, value_name = "TIME", value_parser = args::since)]
    pub(crate) since: Option<String>,
    /// Only records before this time (RFC 3339 in UTC, or a date).
    #[arg(long, value_name = "TIME", value_parser = args::until)]
    pub(crate) until: Option<String>,
    /// One JSON object per record and line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AuditPublicKeyArgs {
    /// Worker secret file the signing key derives from (same rules as for seal).
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Machine-readable output (the PEM and the fingerprint).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AuditHeadArgs {
    /// Log files, oldest first; a single path also takes its rotated segments (PATH.1, PATH.2, ...).
    #[arg(required = true)]
    pub(crate) logs: Vec<PathBuf>,
    /// Print the latest signed checkpoint instead, as
    /// SEQ:HASH:LOG_ID:KEY:SIGNATURE: one line a monitor stores and later
    /// passes to `vram audit verify --checkpoint`.
    #[arg(long)]
    pub(crate) signed: bool,
    /// Verify with this public key (PEM, from `vram audit public-key`)
    /// instead of the secret.
    #[arg(long, value_name = "PEM")]
    pub(crate) public_key: Option<PathBuf>,
    /// Worker secret file the log's audit key derives from (the chain is
    /// verified before its head is printed).
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
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
    /// Verify without the secret, with the worker's public key (PEM, from
    /// `vram audit public-key`): the hash chain, every signed checkpoint and
    /// the log id. Records after the last signed checkpoint are reported as
    /// unproven. With --secret-file too, MACs are checked as well.
    #[arg(long, value_name = "PEM")]
    pub(crate) public_key: Option<PathBuf>,
    /// Last known good head, SEQ:HASH or SEQ:HASH:LOG_ID (as printed by an
    /// earlier verification), or a signed checkpoint line from `vram audit
    /// head --signed` (the log must contain it unaltered and extend it), to
    /// detect a deleted tail or another log in its place.
    #[arg(long)]
    pub(crate) checkpoint: Option<String>,
    /// The chain starts after this record, SEQ:HASH or SEQ:HASH:LOG_ID (the head of
    /// segments archived and removed; see docs/audit-log.md, Rotation and
    /// retention): the first record given must be the one after it.
    #[arg(long, value_name = "SEQ:HASH[:LOG_ID]")]
    pub(crate) after: Option<String>,
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
    #[arg(long, default_value = "256MiB", value_parser = args::Size)]
    pub(crate) size: u64,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// Machine-readable summary.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Size of the buffers and files measured.
    #[arg(long, default_value = "1GiB", value_parser = args::Size)]
    pub(crate) size: u64,
    /// Size of the large shard for the sampled-verify comparison.
    #[arg(long, default_value = "4GiB", value_parser = args::Size)]
    pub(crate) sampled_size: u64,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}
