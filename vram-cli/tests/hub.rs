//! `vram seal hf://...` and `vram verify-cache` against a Hugging Face hub
//! cache built in a temporary directory as `huggingface_hub` writes one.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::OutputWithin as _;

use assert_cmd::Command;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Hub {
    dir: tempfile::TempDir,
    cache: PathBuf,
    blobs: PathBuf,
}

impl Hub {
    /// `models--org--tiny` at COMMIT (refs/main): weights in LFS, a config and a
    /// tokenizer as plain git blobs.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("hub");
        let repo = cache.join("models--org--tiny");
        let blobs = repo.join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        let hub = Self { dir, cache, blobs };
        hub.add("model.safetensors", &weights(), true);
        hub.add("config.json", b"{\"layers\": 2}\n", false);
        hub.add("tokenizer.json", b"{\"vocab\": {}}\n", false);
        hub
    }

    fn add(&self, name: &str, content: &[u8], lfs: bool) -> PathBuf {
        let blob = if lfs {
            hex(ring::digest::digest(&ring::digest::SHA256, content).as_ref())
        } else {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(format!("blob {}\0", content.len()).as_bytes());
            ctx.update(content);
            hex(ctx.finish().as_ref())
        };
        let path = self.blobs.join(&blob);
        std::fs::write(&path, content).unwrap();
        let snap = self.blobs.parent().unwrap().join("snapshots").join(COMMIT);
        std::fs::create_dir_all(&snap).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(name)).unwrap();
        path
    }

    fn blob_of(&self, name: &str) -> PathBuf {
        let link = self
            .blobs
            .parent()
            .unwrap()
            .join("snapshots")
            .join(COMMIT)
            .join(name);
        link.canonicalize().unwrap()
    }

    fn secret(&self) -> PathBuf {
        let p = self.dir.path().join("worker.secret");
        if !p.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .unwrap();
            f.write_all(b"0123456789abcdef0123456789abcdef-hub-test")
                .unwrap();
        }
        p
    }

    fn vram(&self) -> Command {
        let mut c = common::vram();
        c.env_remove("HF_HOME").env("HF_HUB_CACHE", &self.cache);
        c
    }
}

fn weights() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i * 131 % 251) as u8).collect()
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_cached_model_is_sealed_by_name_with_its_revision_in_the_audit_log() {
    let hub = Hub::new();
    let log = hub.dir.path().join("audit.jsonl");
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--json", "--secret-file"])
        .arg(hub.secret())
        .arg("--audit-log")
        .arg(&log)
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "only the weights go to the device");
    // One model: its reference names the exact revision; the row names the file.
    let reference = format!("hf://org/tiny@{COMMIT}");
    assert_eq!(
        shards[0]["model_ref"],
        format!("{reference}/model.safetensors").as_str()
    );
    assert_eq!(
        shards[0]["file"],
        format!("{reference}/model.safetensors").as_str()
    );
    let bound: Vec<&str> = v["model"]["bound_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        bound,
        ["config.json", "tokenizer.json"],
        "bound, not sealed"
    );
    let sha = hex(ring::digest::digest(&ring::digest::SHA256, &weights()).as_ref());
    assert_eq!(
        shards[0]["sha256"],
        sha.as_str(),
        "checked in the sealing pass"
    );
    let audit = std::fs::read_to_string(&log).unwrap();
    assert!(
        audit.contains(&reference),
        "the audit record names the revision"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("config.json"), "{stderr}");
}

#[test]
fn a_flipped_byte_in_the_cached_weights_fails_the_seal_naming_the_file() {
    let hub = Hub::new();
    flip(&hub.blob_of("model.safetensors"), 1_234_567);
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--secret-file"])
        .arg(hub.secret())
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.safetensors") && stderr.contains("nothing was sealed"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_corrupt_small_file_stops_everything_before_a_byte_is_sealed() {
    let hub = Hub::new();
    // Another length, same name.
    std::fs::write(hub.blob_of("config.json"), b"{\"layers\": 20}\n").unwrap();
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--secret-file"])
        .arg(hub.secret())
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.json") && stderr.contains("huggingface-cli download org/tiny"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sealed"));
}

#[test]
fn verify_cache_reports_every_corrupt_file_and_how_to_fetch_it_again() {
    let hub = Hub::new();
    let ok = hub
        .vram()
        .args(["verify-cache", "hf://org/tiny"])
        .output_within(common::PATIENCE);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("all intact"));
    flip(&hub.blob_of("model.safetensors"), 10);
    flip(&hub.blob_of("tokenizer.json"), 3);
    let out = hub
        .vram()
        .args(["verify-cache", "hf://org/tiny", "--json"])
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intact"], false);
    let corrupt: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "corrupt")
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(corrupt, ["model.safetensors", "tokenizer.json"]);
    let human = hub
        .vram()
        .args(["verify-cache", "hf://org/tiny"])
        .output_within(common::PATIENCE);
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(text.matches("to fetch it again: rm ").count(), 2, "{text}");
}

#[test]
fn a_missing_blob_an_unknown_revision_and_an_uncached_model_are_clear_errors() {
    let hub = Hub::new();
    let run = |args: &[&str]| {
        hub.vram()
            .args(args)
            .arg("--secret-file")
            .arg(hub.secret())
            .output_within(common::PATIENCE)
    };
    let out = run(&["seal", "hf://org/tiny@v9"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("main") && stderr.contains(COMMIT),
        "lists revisions: {stderr}"
    );
    let out = run(&["seal", "hf://org/absent"]);
    assert_eq!(out.status.code(), Some(3));
    std::fs::remove_file(hub.blob_of("tokenizer.json")).unwrap();
    let out = run(&["seal", "hf://org/tiny"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer.json"));
}

/// Replaces the snapshot's link `name` with a plain file holding `content`.
fn plain_file_in_snapshot(hub: &Hub, name: &str, content: &[u8]) {
    let snap = hub
        .dir
        .path()
        .join("hub/models--org--tiny/snapshots")
        .join(COMMIT);
    std::fs::remove_file(snap.join(name)).unwrap();
    std::fs::write(snap.join(name), content).unwrap();
}

fn snapshot_dir(hub: &Hub) -> PathBuf {
    hub.dir
        .path()
        .join("hub/models--org--tiny/snapshots")
        .join(COMMIT)
}

#[test]
fn a_corrupt_small_file_kept_in_lfs_is_never_bound() {
    for name in ["tokenizer.model", "spiece.model", "tokenizer.json"] {
        let hub = Hub::new();
        if name == "tokenizer.json" {
            // Replace the git blob with an LFS one.
            std::fs::remove_file(snapshot_dir(&hub).join(name)).unwrap();
        }
        let blob = hub.add(name, b"a sentencepiece model", true);
        flip(&blob, 4);
        let out = hub
            .vram()
            .args(["seal", "hf://org/tiny", "--secret-file"])
            .arg(hub.secret())
            .output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name)
                && stderr.contains("nothing was sealed")
                && stderr.contains("huggingface-cli download org/tiny"),
            "{name}: {stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("bound"));
    }
}

#[test]
fn weights_the_index_names_without_the_safetensors_suffix_are_checked() {
    let hub = Hub::new();
    let snap = snapshot_dir(&hub);
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    hub.add(
        "model.safetensors.index.json",
        br#"{"weight_map":{"a":"weights-part-1"}}"#,
        false,
    );
    let blob = hub.add("weights-part-1", &weights(), true);
    // Intact: sealed with the SHA-256 its blob is named by.
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--json", "--secret-file"])
        .arg(hub.secret())
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = hex(ring::digest::digest(&ring::digest::SHA256, &weights()).as_ref());
    assert_eq!(v["shards"][0]["sha256"], sha.as_str());
    // Corrupt: refused, naming it.
    flip(&blob, 77);
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--secret-file"])
        .arg(hub.secret())
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("weights-part-1"), "{stderr}");
}

#[test]
fn a_plain_file_in_a_cache_of_links_is_refused_unless_the_cache_has_no_links() {
    for name in ["model.safetensors", "tokenizer.json"] {
        let hub = Hub::new();
        let content: Vec<u8> = if name == "tokenizer.json" {
            b"{\"vocab\": {\"evil\": 1}}\n".to_vec()
        } else {
            let mut w = weights();
            w[5] ^= 1;
            w
        };
        plain_file_in_snapshot(&hub, name, &content);
        for args in [
            vec!["seal", "hf://org/tiny"],
            vec!["verify-cache", "hf://org/tiny"],
        ] {
            let mut cmd = hub.vram();
            cmd.args(&args);
            if args[0] == "seal" {
                cmd.arg("--secret-file").arg(hub.secret());
            }
            let out = cmd.output_within(common::PATIENCE);
            assert_eq!(out.status.code(), Some(1), "{name} {args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(name) && stderr.contains("--cache-without-links"),
                "{name} {args:?}: {stderr}"
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains("all intact"));
        }
        // Said explicitly: taken, unchecked, and said so.
        let out = hub
            .vram()
            .args([
                "seal",
                "hf://org/tiny",
                "--cache-without-links",
                "--secret-file",
            ])
            .arg(hub.secret())
            .output_within(common::PATIENCE);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("no expected digest"));
        let out = hub
            .vram()
            .args(["verify-cache", "hf://org/tiny", "--cache-without-links"])
            .output_within(common::PATIENCE);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("unchecked") && !text.contains("all intact"),
            "{text}"
        );
    }
}

#[test]
fn a_snapshot_directory_of_the_cache_is_checked_as_hf_is() {
    let hub = Hub::new();
    let dir = snapshot_dir(&hub);
    let out = hub
        .vram()
        .args(["seal", "--json", "--secret-file"])
        .arg(hub.secret())
        .arg(&dir)
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["model"]["model_ref"],
        format!("hf://org/tiny@{COMMIT}").as_str()
    );
    let sha = hex(ring::digest::digest(&ring::digest::SHA256, &weights()).as_ref());
    assert_eq!(v["shards"][0]["sha256"], sha.as_str());

    flip(&hub.blob_of("model.safetensors"), 99);
    let out = hub
        .vram()
        .args(["seal", "--secret-file"])
        .arg(hub.secret())
        .arg(&dir)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model.safetensors"));
    flip(&hub.blob_of("model.safetensors"), 99);

    flip(&hub.blob_of("config.json"), 2);
    let out = hub
        .vram()
        .args(["seal", "--secret-file"])
        .arg(hub.secret())
        .arg(&dir)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
}

#[test]
fn seal_output_names_each_file_and_records_the_bound_files() {
    let hub = Hub::new();
    let log = hub.dir.path().join("audit.jsonl");
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--json", "--secret-file"])
        .arg(hub.secret())
        .arg("--audit-log")
        .arg(&log)
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file_ref = format!("hf://org/tiny@{COMMIT}/model.safetensors");
    let row = &v["shards"][0];
    assert_eq!(row["model_ref"], file_ref.as_str());
    assert!(row["seal_seconds"].as_f64().is_some(), "{row}");
    assert!(row["seal_gb_per_s"].as_f64().is_some(), "{row}");
    assert_eq!(
        v["model"]["model_ref"],
        format!("hf://org/tiny@{COMMIT}").as_str()
    );

    // The audit log: the shard's record names its file; one model_bound
    // record lists every bound file with its length and SHA-256.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sealed: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"]["type"] == "vram_sealed")
        .collect();
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0]["event"]["model_ref"], file_ref.as_str());
    let bound: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"]["type"] == "model_bound")
        .collect();
    assert_eq!(bound.len(), 1);
    let files = bound[0]["event"]["files"].as_array().unwrap();
    let sha = |b: &[u8]| hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref());
    assert_eq!(
        files,
        &[
            serde_json::json!({"name": "config.json", "bytes": 14, "sha256": sha(b"{\"layers\": 2}\n")}),
            serde_json::json!({"name": "tokenizer.json", "bytes": 14, "sha256": sha(b"{\"vocab\": {}}\n")}),
        ]
    );
    assert_eq!(bound[0]["event"]["shards"][0], row["shard_id"]);
    let verified = hub
        .vram()
        .args(["audit", "verify", "--secret-file"])
        .arg(hub.secret())
        .arg(&log)
        .output_within(common::PATIENCE);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // Text: the reference once on the model line.
    let out = hub
        .vram()
        .args(["seal", "hf://org/tiny", "--secret-file"])
        .arg(hub.secret())
        .output_within(common::PATIENCE);
    let text = String::from_utf8_lossy(&out.stdout);
    let model_line = text.lines().find(|l| l.starts_with("model ")).unwrap();
    assert_eq!(
        model_line
            .matches(&format!("hf://org/tiny@{COMMIT}"))
            .count(),
        1,
        "{model_line}"
    );
}
