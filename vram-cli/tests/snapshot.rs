//! `vram seal DIR`: a Hugging Face snapshot directory sealed as one model:
//! a single `model.safetensors` or the shards `model.safetensors.index.json`
//! names (those and only those) as one set, the small files bound.
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
use std::path::Path;

/// A worker secret (mode 0600) in a directory removed when the tests end.
fn secret() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        common::secret_file_with(
            dir.path(),
            "worker.secret",
            b"0123456789abcdef0123456789abcdef-snapshot",
        );
        dir
    });
    dir.path()
}

fn vram() -> Command {
    let secret = secret().join("worker.secret");
    let mut c = common::vram();
    c.env("VRAM_SECRET_FILE", secret);
    c
}

/// A safetensors file of one U8 tensor.
fn safetensors(name: &str, len: usize, seed: u8) -> Vec<u8> {
    let header =
        format!(r#"{{"{name}":{{"dtype":"U8","shape":[{len}],"data_offsets":[0,{len}]}}}}"#);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend((0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn sharded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "model-00001-of-00002.safetensors",
        &safetensors("a", 300_000, 1),
    );
    write(
        d,
        "model-00002-of-00002.safetensors",
        &safetensors("b", 200_000, 2),
    );
    write(
        d,
        "model-00009-of-00009.safetensors",
        &safetensors("stale", 10, 3),
    );
    write(
        d,
        "model.safetensors.index.json",
        br#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#,
    );
    write(d, "config.json", b"{\"layers\": 2}\n");
    write(d, "tokenizer.json", b"{\"vocab\": {}}\n");
    dir
}

#[test]
fn a_sharded_snapshot_is_sealed_as_one_model() {
    let dir = sharded();
    let out = vram()
        .args(["seal", "--json", "--model-ref", "org/tiny"])
        .arg(dir.path())
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "the index's shards, not the stale one");
    for (i, (row, bytes)) in shards.iter().zip([300_000u64, 200_000]).enumerate() {
        assert_eq!(row["shard_index"], i);
        assert_eq!(row["shard_total"], 2);
        // Each shard's seal names its file under the model's reference.
        assert_eq!(
            row["model_ref"],
            format!("org/tiny/model-0000{}-of-00002.safetensors", i + 1).as_str()
        );
        assert!(row["seal_seconds"].as_f64().is_some(), "{row}");
        assert!(row["vram_bytes"].as_u64().unwrap() > bytes);
        assert_eq!(row["set_id"], shards[0]["set_id"]);
        assert!(row["file"]
            .as_str()
            .unwrap()
            .ends_with(&format!("model-0000{}-of-00002.safetensors", i + 1)));
    }
    let model = &v["model"];
    assert_eq!(
        model["weights"],
        serde_json::json!([
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ])
    );
    let bound: Vec<&str> = model["bound_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        bound,
        [
            "config.json",
            "tokenizer.json",
            "model.safetensors.index.json"
        ]
    );
    assert_eq!(model["binding"].as_str().unwrap().len(), 64);

    // Text output: a line per shard, the model, each bound file.
    let out = vram()
        .arg("seal")
        .arg(dir.path())
        .output_within(common::PATIENCE);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("sealed ")).count(),
        2,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("model ") && l.contains("2 shard(s)")),
        "{text}"
    );
    assert!(
        text.contains("  bound tokenizer.json  14 bytes  sha256 "),
        "{text}"
    );
}

#[test]
fn what_is_not_one_model_is_refused_before_any_device_work() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", b"{}");
    let out = vram()
        .arg("seal")
        .arg(dir.path())
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("neither model.safetensors nor model.safetensors.index.json"),
        "{stderr}"
    );

    // An index that names a file outside the snapshot.
    write(
        dir.path(),
        "model.safetensors.index.json",
        br#"{"weight_map":{"a":"../elsewhere.safetensors"}}"#,
    );
    let out = vram()
        .arg("seal")
        .arg(dir.path())
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a file inside the snapshot"),
        "{stderr}"
    );

    // A directory is one model on its own.
    let snap = sharded();
    let other = snap.path().join("config.json");
    let out = vram()
        .arg("seal")
        .arg(snap.path())
        .arg(&other)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sealed on its own"));
}

#[test]
fn links_that_leave_the_model_directory_are_refused() {
    for name in ["model.safetensors", "tokenizer.json"] {
        let outer = tempfile::tempdir().unwrap();
        let d = outer.path().join("model");
        write(&d, "model.safetensors", &safetensors("w", 1000, 4));
        write(&d, "config.json", b"{}");
        write(&d, "sub/tokenizer.json", b"{\"vocab\": {}}");
        // A link inside the directory is fine.
        std::os::unix::fs::symlink("sub/tokenizer.json", d.join("tokenizer.json")).unwrap();
        let out = vram().arg("seal").arg(&d).output_within(common::PATIENCE);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The same name, leading out: refused whatever it is called.
        write(outer.path(), "private", &safetensors("p", 1000, 5));
        std::fs::remove_file(d.join(name)).unwrap();
        std::os::unix::fs::symlink("../private", d.join(name)).unwrap();
        let out = vram().arg("seal").arg(&d).output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name) && stderr.contains("leads outside the model directory"),
            "{name}: {stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("sealed"));
    }
}
