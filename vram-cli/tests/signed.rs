//! `vram seal MODEL --model-signature SIG --public-key PEM` with bundles made
//! by the real `model_signing sign key` 1.1.1 (vram-signing's fixtures).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::OutputWithin as _;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vram-signing/tests/fixtures")
}

struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
    secret: PathBuf,
    log: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_dir(&fixtures().join("model"), &model);
    let secret = dir.path().join("worker.secret");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .unwrap()
        .write_all(b"0123456789abcdef0123456789abcdef-signed-test\n")
        .unwrap();
    let log = dir.path().join("audit.jsonl");
    Setup {
        dir,
        model,
        secret,
        log,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn seal(s: &Setup, model: &Path, sig: &str, key: &str) -> Output {
    common::vram_process()
        .args(["seal", "--device", "mock", "--json"])
        .arg(model)
        .arg("--model-signature")
        .arg(fixtures().join(sig))
        .arg("--public-key")
        .arg(fixtures().join(key))
        .arg("--secret-file")
        .arg(&s.secret)
        .arg("--audit-log")
        .arg(&s.log)
        .output_within(common::PATIENCE)
}

fn events(s: &Setup, ty: &str) -> usize {
    std::fs::read_to_string(&s.log)
        .unwrap_or_default()
        .matches(&format!("\"type\":\"{ty}\""))
        .count()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_genuine_model_is_sealed_file_by_file_on_every_curve() {
    for (sig, key) in [
        ("p256.sig", "p256.pub"),
        ("p384.sig", "p384.pub"),
        ("p521.sig", "p521.pub"),
        ("p256-compat-pae.sig", "p256.pub"),
    ] {
        let s = setup();
        let out = seal(&s, &s.model, sig, key);
        assert!(out.status.success(), "{sig}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let files: Vec<String> = v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["file"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(files.len(), 3, "{sig}: {files:?}");
        assert!(files[1].ends_with("model/model.safetensors"), "{files:?}");
        // Each shard's plain SHA-256 is the signed one, and its seal (format
        // 3) binds the publisher's key, the statement and the file's name.
        let key = vram_signing::PublicKey::from_pem(&std::fs::read(fixtures().join(key)).unwrap())
            .unwrap();
        let signed =
            vram_signing::verify_bundle(&std::fs::read(fixtures().join(sig)).unwrap(), &key)
                .unwrap();
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        for (row, resource) in v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .zip(signed.resources())
        {
            assert_eq!(row["sha256"], hex(resource.sha256), "{sig}");
            assert!(row["model_ref"].as_str().unwrap().starts_with("file:model"));
            assert_eq!(row["seal_version"], 3);
            let p = &row["provenance"];
            assert_eq!(p["publisher_key_sha256"], key.fingerprint_hex());
            // The SHA-256 of the statement as signed (the DSSE payload),
            // computed here from the bundle file, not the subject digest.
            assert_eq!(p["statement_sha256"], statement_sha256(sig));
            assert_ne!(p["statement_sha256"], hex(signed.subject_sha256()));
            assert_eq!(p["model_name"], "model");
            assert_eq!(p["resource_name"], resource.name.as_str());
        }
        let log = std::fs::read_to_string(&s.log).unwrap();
        assert_eq!(
            log.matches("\"resource_name\":\"tokenizer/vocab.txt\"")
                .count(),
            1
        );
        assert!(
            stderr(&out).contains("signature verified"),
            "{}",
            stderr(&out)
        );
        assert_eq!(events(&s, "vram_sealed"), 3);
    }
}

#[test]
fn a_single_file_model_is_sealed() {
    let s = setup();
    let single = s.dir.path().join("single.safetensors");
    std::fs::copy(fixtures().join("single.safetensors"), &single).unwrap();
    let out = seal(&s, &single, "single-p256.sig", "p256.pub");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(events(&s, "vram_sealed"), 1);
}

#[test]
fn a_flipped_byte_seals_nothing_and_is_audited() {
    let s = setup();
    let f = s.model.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[4000] ^= 0x10;
    std::fs::write(&f, bytes).unwrap();
    let out = seal(&s, &s.model, "p256.sig", "p256.pub");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("publisher signed"), "{err}");
    assert!(err.contains("nothing stays sealed"), "{err}");
    // The failure is a critical record, and what was sealed before it was
    // released: nothing stays sealed.
    assert_eq!(events(&s, "seal_failed"), 1);
    assert_eq!(
        events(&s, "vram_deallocated"),
        events(&s, "vram_sealed") + 1,
        "every allocation released"
    );
}

#[test]
fn a_changed_file_set_is_refused_before_any_device_work() {
    type Tamper = fn(&Path, &Path);
    let cases: [(&str, Tamper); 4] = [
        ("missing", |m, _| {
            std::fs::remove_file(m.join("tokenizer/vocab.txt")).unwrap();
        }),
        ("extra", |m, _| {
            std::fs::write(m.join("extra.txt"), "x").unwrap()
        }),
        ("edited config", |m, _| {
            let f = m.join("config.json");
            let t = std::fs::read_to_string(&f).unwrap().replacen("32", "33", 1);
            std::fs::write(f, t).unwrap();
        }),
        ("symlink", |m, d| {
            let outside = d.join("config.json");
            std::fs::rename(m.join("config.json"), &outside).unwrap();
            std::os::unix::fs::symlink(&outside, m.join("config.json")).unwrap();
        }),
    ];
    for (what, tamper) in cases {
        let s = setup();
        tamper(&s.model, s.dir.path());
        let out = seal(&s, &s.model, "p256.sig", "p256.pub");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        if what != "edited config" {
            // Found from the file set alone: no device memory touched.
            assert_eq!(events(&s, "vram_sealed"), 0, "{what}");
            assert!(stderr(&out).contains("nothing was sealed"), "{what}");
        }
    }
}

#[test]
fn a_wrong_key_or_an_unsupported_bundle_is_refused() {
    let s = setup();
    let out = seal(&s, &s.model, "p256.sig", "other.pub");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("another key"));

    // A certificate bundle: not verifiable offline here, refused (exit 2).
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("p256.sig")).unwrap()).unwrap();
    v["verificationMaterial"]["certificate"] = serde_json::json!({"rawBytes": "MAA="});
    let cert = s.dir.path().join("cert.sig");
    std::fs::write(&cert, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = seal(&s, &s.model, cert.to_str().unwrap(), "p256.pub");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not supported"));

    // The two flags go together, and take one model.
    let out = common::vram_process()
        .args(["seal", "--model-signature", "x.sig"])
        .arg(&s.model)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(events(&s, "vram_sealed"), 0);
}

/// A bundle whose envelope declares another payload type does not verify
/// as a model signature: exit 1 and class integrity, as model_signing's
/// verification failure, not a usage error; nothing is sealed.
#[test]
fn a_bundle_with_another_payload_type_is_an_integrity_failure() {
    let s = setup();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("p256.sig")).unwrap()).unwrap();
    v["dsseEnvelope"]["payloadType"] = "application/json".into();
    let edited = s.dir.path().join("payload-type.sig");
    std::fs::write(&edited, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = seal(&s, &s.model, edited.to_str().unwrap(), "p256.pub");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"integrity\""), "{stdout}");
    assert!(!stdout.contains("\"usage\""), "{stdout}");
    assert!(stderr(&out).contains("payload type"), "{}", stderr(&out));
    assert_eq!(events(&s, "vram_sealed"), 0);
}

/// A relative `--model-signature` outside the model names no file inside
/// it: a file of that name planted in the model is neither skipped nor
/// sealed unsigned; it is an extra file, and nothing is sealed.
#[test]
fn a_signature_outside_the_model_does_not_hide_a_file_of_its_name_inside() {
    let s = setup();
    std::fs::copy(fixtures().join("p256.sig"), s.dir.path().join("model.sig")).unwrap();
    std::fs::write(s.model.join("model.sig"), b"planted").unwrap();
    let run = |sig: &Path| {
        common::vram_process()
            .current_dir(s.dir.path())
            .args(["seal", "--device", "mock", "model", "--model-signature"])
            .arg(sig)
            .arg("--public-key")
            .arg(fixtures().join("p256.pub"))
            .arg("--secret-file")
            .arg(&s.secret)
            .output_within(common::PATIENCE)
    };
    let out = run(Path::new("model.sig"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("model.sig"), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sealed"));

    // The bundle inside the model is not a file of the model.
    std::fs::copy(fixtures().join("p256.sig"), s.model.join("model.sig")).unwrap();
    let out = run(Path::new("model/model.sig"));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// SHA-256 of the DSSE payload of the bundle `sig` among the fixtures, in hex.
fn statement_sha256(sig: &str) -> String {
    use base64::Engine as _;
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join(sig)).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    ring::digest::digest(&ring::digest::SHA256, &payload)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `--public-key` and `--model-signature` are files someone else may write
/// to: a symbolic link, a FIFO (refused at once, never waited on) and a
/// file larger than any key or bundle are refused with a clear message,
/// before anything is sealed.
#[test]
fn a_link_a_fifo_or_an_oversized_file_is_no_key_or_signature() {
    let s = setup();
    let run = |sig: &Path, key: &Path| {
        common::vram_process()
            .args(["seal", "--device", "mock"])
            .arg(&s.model)
            .arg("--model-signature")
            .arg(sig)
            .arg("--public-key")
            .arg(key)
            .arg("--secret-file")
            .arg(&s.secret)
            .arg("--audit-log")
            .arg(&s.log)
            // A FIFO would hold the open (or the read) for ever: bounded
            // well below the usual patience, since the refusal is immediate.
            .output_within(std::time::Duration::from_secs(30))
    };
    let sig = fixtures().join("p256.sig");
    let key = fixtures().join("p256.pub");
    let refused = |out: &Output, what: &str, want: &str| {
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(out));
        assert!(stderr(out).contains(want), "{what}: {}", stderr(out));
        assert_eq!(events(&s, "vram_sealed"), 0, "{what}");
    };

    // Links: to the real key, to the real bundle.
    let key_link = s.dir.path().join("key-link.pub");
    std::os::unix::fs::symlink(&key, &key_link).unwrap();
    let out = run(&sig, &key_link);
    refused(&out, "key link", "is a symbolic link, not a regular file");
    assert!(stderr(&out).contains("public key"), "{}", stderr(&out));
    let sig_link = s.dir.path().join("sig-link.sig");
    std::os::unix::fs::symlink(&sig, &sig_link).unwrap();
    let out = run(&sig_link, &key);
    refused(
        &out,
        "bundle link",
        "is a symbolic link, not a regular file",
    );
    assert!(
        stderr(&out).contains("signature bundle"),
        "{}",
        stderr(&out)
    );

    // FIFOs that no one writes to: refused promptly.
    let fifo = s.dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .output_within(common::PATIENCE);
    assert!(made.status.success(), "mkfifo: {made:?}");
    let started = std::time::Instant::now();
    let out = run(&sig, &fifo);
    refused(&out, "key FIFO", "is a FIFO, not a regular file");
    let out = run(&fifo, &key);
    refused(&out, "bundle FIFO", "is a FIFO, not a regular file");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the FIFOs were refused, not waited on: {:?}",
        started.elapsed()
    );

    // Over the caps: a 64 KiB key, a bundle over vram-signing's limit (a
    // sparse file: refused by its size before a byte is read).
    let big_key = s.dir.path().join("big.pub");
    std::fs::write(&big_key, vec![b'A'; (64 << 10) + 1]).unwrap();
    let out = run(&sig, &big_key);
    refused(&out, "big key", "larger than any public key (65536 bytes)");
    let big_sig = s.dir.path().join("big.sig");
    let f = std::fs::File::create(&big_sig).unwrap();
    f.set_len(u64::try_from(vram_signing::MAX_BUNDLE_BYTES).unwrap() + 1)
        .unwrap();
    drop(f);
    let out = run(&big_sig, &key);
    refused(&out, "big bundle", "larger than any signature bundle");

    // The same files, plain: sealed.
    let out = run(&sig, &key);
    assert!(out.status.success(), "{}", stderr(&out));
}
