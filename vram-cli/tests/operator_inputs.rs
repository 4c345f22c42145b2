//! Inputs as operators already have them: model references from hubs, object
//! stores and registries; digests as sha256sum, Git LFS and OCI print them;
//! secrets as Kubernetes, shells and pipes deliver them. Each drives the
//! built `vram` binary on the mock device.
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

use common::{model, vram};
use std::io::Write;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-cli-test\n";

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> PathBuf {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
    // The umask may have taken bits off; set exactly what was asked.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

fn secret_file(dir: &Path) -> PathBuf {
    write_mode(&dir.join("worker.secret"), SECRET, 0o600)
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The kubelet's layout for a secret volume (see vram-secrets' tests).
fn kubelet_volume(dir: &Path, mode: u32) -> PathBuf {
    let stamp = "..2024_01_01_00_00_00.123456789";
    std::fs::create_dir(dir.join(stamp)).unwrap();
    write_mode(&dir.join(stamp).join("worker-secret"), SECRET, mode);
    symlink(stamp, dir.join("..data")).unwrap();
    symlink("..data/worker-secret", dir.join("worker-secret")).unwrap();
    dir.join("worker-secret")
}

#[test]
fn real_model_refs_are_sealed_and_read_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = dir.path().join("a.bin");
    std::fs::write(&a, model(5000)).unwrap();
    let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let refs = [
        "hf://meta-llama/Llama-3.1-8B@main/model-00001-of-00004.safetensors".to_owned(),
        "s3://my-bucket/models/llama%2Fv2/w.bin".to_owned(),
        "gs://bucket/key/with spaces.bin".to_owned(),
        "file:///srv/models/llama.gguf".to_owned(),
        format!("registry.example.com/ns/model@sha256:{digest}"),
        "ghcr.io/org/model:v1.2".to_owned(),
        "modèles/poids-重み.bin".to_owned(),
    ];
    for model_ref in &refs {
        let log = dir.path().join("audit.jsonl");
        let _ = std::fs::remove_file(&log);
        let out = vram()
            .args([
                "seal",
                "--json",
                "--quiet",
                "--device",
                "mock",
                "--model-ref",
            ])
            .arg(model_ref)
            .arg("--secret-file")
            .arg(&s)
            .arg("--audit-log")
            .arg(&log)
            .arg(&a)
            .output_within(common::PATIENCE);
        assert!(out.status.success(), "{model_ref}: {}", stderr(&out));
        let v = stdout_json(&out);
        assert_eq!(v["shards"][0]["model_ref"], model_ref.as_str());
        // The audit record carries it unchanged too.
        let records = std::fs::read_to_string(&log).unwrap();
        let sealed = records
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r.to_string().contains("vram_sealed"))
            .expect("a vram_sealed record");
        assert!(
            sealed
                .to_string()
                .contains(&serde_json::to_string(model_ref).unwrap()),
            "{model_ref} not in {sealed}"
        );
    }
}

#[test]
fn hostile_model_refs_exit_2_with_the_input_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = dir.path().join("a.bin");
    std::fs::write(&a, model(100)).unwrap();
    for (model_ref, needle) in [
        ("hf:///etc/passwd", "absolute path"),
        ("hf://org/%2e%2e/%2e%2e/etc", "\"..\" path segment"),
        ("file:///srv/../etc/shadow", "\"..\" path segment"),
        ("model\u{202e}nib.exe", r"\u{202e}"),
        ("model%0a[INFO] sealed", "control character"),
        ("50%off.bin", "%25"),
    ] {
        let out = vram()
            .args([
                "seal",
                "--json",
                "--device",
                "mock",
                "--model-ref",
                model_ref,
            ])
            .arg("--secret-file")
            .arg(&s)
            .arg(&a)
            .output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(2), "{model_ref}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--model-ref"), "{err}");
        assert!(err.contains(needle), "{model_ref}: {err}");
        assert!(!err.contains('\u{202e}'), "raw bidi control in {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

/// Every accepted form of `--expect-sha256`, on a real file; the right
/// digest seals (exit 0), a wrong one exits 1, a malformed one exits 2.
#[test]
fn expect_sha256_in_every_form_operators_have() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let bytes = model(70_000);
    let a = dir.path().join("model.safetensors");
    std::fs::write(&a, &bytes).unwrap();
    let hex = sha256_hex(&bytes);
    let wrong = sha256_hex(b"something else");
    let len = bytes.len();

    // The forms given inline, and files holding them.
    let inline = |h: &str| {
        vec![
            h.to_owned(),
            h.to_uppercase(),
            format!("sha256:{h}"),
            format!("{h}  model.safetensors"),
            format!("{h} *model.safetensors"),
            format!("oid sha256:{h}"),
            format!("\"digest\": \"sha256:{h}\","),
        ]
    };
    let files = |h: &str, tag: &str, size: usize| {
        let pointer = dir.path().join(format!("{tag}.pointer"));
        std::fs::write(
            &pointer,
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{h}\nsize {size}\n"),
        )
        .unwrap();
        let sums = dir.path().join(format!("{tag}.sha256"));
        std::fs::write(&sums, format!("{h}  model.safetensors\n")).unwrap();
        let descriptor = dir.path().join(format!("{tag}.json"));
        std::fs::write(
            &descriptor,
            format!(
                "{{\n  \"mediaType\": \"application/vnd.oci.image.layer.v1.tar\",\n  \"digest\": \"sha256:{h}\",\n  \"size\": {size}\n}}\n"
            ),
        )
        .unwrap();
        [pointer, sums, descriptor]
            .iter()
            .map(|p| format!("@{}", p.display()))
            .collect::<Vec<_>>()
    };
    let seal = |value: &str| {
        vram()
            .args([
                "seal",
                "--quiet",
                "--device",
                "mock",
                "--expect-sha256",
                value,
            ])
            .arg("--secret-file")
            .arg(&s)
            .arg(&a)
            .output_within(common::PATIENCE)
    };

    let mut good = inline(&hex);
    good.extend(files(&hex, "good", len));
    for value in &good {
        let out = seal(value);
        assert_eq!(out.status.code(), Some(0), "{value}: {}", stderr(&out));
    }
    let mut mismatched = inline(&wrong);
    mismatched.extend(files(&wrong, "wrong", len));
    for value in &mismatched {
        let out = seal(value);
        assert_eq!(out.status.code(), Some(1), "{value}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("expected SHA-256"),
            "{}",
            stderr(&out)
        );
    }
    // The right digest with the wrong size (pointer, descriptor) exits 1,
    // naming both sizes, before anything is sealed.
    for value in files(&hex, "short", len - 1)
        .into_iter()
        .filter(|v| !v.ends_with(".sha256"))
    {
        let out = seal(&value);
        assert_eq!(out.status.code(), Some(1), "{value}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("is {len} bytes")), "{err}");
        assert!(err.contains(&format!("says {} bytes", len - 1)), "{err}");
    }

    // Malformed: exit 2, and the message lists the accepted forms.
    let two_lines = dir.path().join("two.sha256");
    std::fs::write(&two_lines, format!("{hex}  a.bin\n{hex}  b.bin\n")).unwrap();
    let no_size = dir.path().join("nosize.pointer");
    std::fs::write(
        &no_size,
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{hex}\n"),
    )
    .unwrap();
    for value in [
        "xyz".to_owned(),
        hex[1..].to_owned(),
        format!("md5:{hex}"),
        format!("{hex} one-space-is-not-sha256sum"),
        format!("@{}", two_lines.display()),
        format!("@{}", no_size.display()),
        format!("@{}", dir.path().join("absent").display()),
    ] {
        let out = seal(&value);
        assert_eq!(out.status.code(), Some(2), "{value}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--expect-sha256"), "{err}");
        if !value.contains("absent") {
            assert!(err.contains("Accepted forms"), "{err}");
        }
    }
}

#[test]
fn help_lists_the_digest_forms_and_the_secret_sources() {
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["seal", "--help"],
            &[
                "sha256:HEX",
                "sha256sum",
                "oid sha256:HEX",
                "\"digest\": \"sha256:HEX\"",
                "@PATH",
                "file:///",
                "/dev/fd/N",
            ],
        ),
        (
            &["--help"],
            &[
                "defaultMode: 0400",
                "chmod 600",
                "--secret-file -",
                "/dev/fd/N",
            ],
        ),
    ];
    for (args, needles) in cases {
        let out = vram().args(args).output_within(common::PATIENCE);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for needle in needles {
            assert!(text.contains(needle), "{args:?} lacks {needle:?}:\n{text}");
        }
    }
}

#[test]
fn a_kubernetes_secret_volume_seals_and_its_files_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("secret-volume");
    std::fs::create_dir(&volume).unwrap();
    let secret = kubelet_volume(&volume, 0o400);
    let a = dir.path().join("a.bin");
    std::fs::write(&a, model(3000)).unwrap();
    let log = dir.path().join("audit.jsonl");
    let out = vram()
        .args([
            "seal",
            "--quiet",
            "--json",
            "--device",
            "mock",
            "--secret-file",
        ])
        .arg(&secret)
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .output_within(common::PATIENCE);
    assert!(out.status.success(), "{}", stderr(&out));
    // The log verifies with the secret read through the same links.
    vram()
        .args(["audit", "verify", "--secret-file"])
        .arg(&secret)
        .arg(&log)
        .assert()
        .success();
    // An audit log pointed at the secret's file, by the name in the
    // timestamped directory or through `..data`, is refused, and the
    // secret is left as it was.
    let real = volume.join("..2024_01_01_00_00_00.123456789/worker-secret");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    for target in [real.clone(), volume.join("..data/worker-secret")] {
        let out = vram()
            .args(["seal", "--quiet", "--device", "mock", "--secret-file"])
            .arg(&secret)
            .arg("--audit-log")
            .arg(&target)
            .arg(&a)
            .output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(stderr(&out).contains("same file"), "{}", stderr(&out));
        assert_eq!(std::fs::read(&real).unwrap(), SECRET);
    }
}

#[test]
fn a_kubernetes_secret_with_mode_0644_exits_3_naming_default_mode() {
    let dir = tempfile::tempdir().unwrap();
    let secret = kubelet_volume(dir.path(), 0o644);
    let a = dir.path().join("a.bin");
    std::fs::write(&a, model(100)).unwrap();
    let out = vram()
        .args(["seal", "--device", "mock", "--secret-file"])
        .arg(&secret)
        .arg(&a)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("defaultMode: 0400"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

/// The same secret from a file, from standard input and from a pipe gives
/// the same keys: the audit log one writes, another verifies.
#[test]
fn secrets_from_standard_input_and_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = dir.path().join("a.bin");
    std::fs::write(&a, model(3000)).unwrap();
    let log = dir.path().join("audit.jsonl");
    // Standard input, a pipe.
    let out = vram()
        .args(["seal", "--quiet", "--device", "mock", "--secret-file", "-"])
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .write_stdin(SECRET)
        .output_within(common::PATIENCE);
    assert!(out.status.success(), "{}", stderr(&out));
    vram()
        .args(["audit", "verify", "--secret-file"])
        .arg(&s)
        .arg(&log)
        .assert()
        .success();
    // Too short on standard input: exit 3, as for a file.
    let out = vram()
        .args(["seal", "--device", "mock", "--secret-file", "-"])
        .arg(&a)
        .write_stdin(&b"short\n"[..])
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at least 32 bytes"),
        "{}",
        stderr(&out)
    );
    // Standard input redirected from a loose regular file gets the file rules.
    let loose = write_mode(&dir.path().join("loose"), SECRET, 0o644);
    // (std's Command: assert_cmd would pipe the file's bytes instead.)
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("vram"))
        .args(["seal", "--device", "mock", "--secret-file", "-"])
        .arg(&a)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1")
        .stdin(std::fs::File::open(&loose).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::wait_within(out, common::PATIENCE);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("too open"), "{}", stderr(&out));

    // Process substitution: bash passes /dev/fd/N, a pipe.
    let Ok(bash) = which_bash() else {
        eprintln!("SKIPPED: bash not found; --secret-file <(...) is not tested");
        return;
    };
    let bin = assert_cmd::cargo::cargo_bin("vram");
    let script = r#""$VRAM" audit verify --secret-file <(cat "$SECRET") "$LOG" && "$VRAM" audit verify --secret-file <(printf short) "$LOG""#;
    let out = std::process::Command::new(bash)
        .arg("-c")
        .arg(script)
        .env("VRAM", &bin)
        .env("SECRET", &s)
        .env("LOG", &log)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .output_within(common::PATIENCE);
    // The first verifies (the same keys), the second is refused as too short.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intact"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains("at least 32 bytes"),
        "{}",
        stderr(&out)
    );
}

fn which_bash() -> Result<PathBuf, ()> {
    ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(())
}

#[test]
fn a_file_name_with_a_percent_sign_gets_an_encoded_default_model_ref() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    for (name, want) in [
        ("50%off.bin", "file:50%25off.bin"),
        ("100%.bin", "file:100%25.bin"),
        ("modèle.bin", "file:modèle.bin"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, model(5000)).unwrap();
        let out = vram()
            .args(["seal", "--json", "--device", "mock", "--secret-file"])
            .arg(&s)
            .arg(&f)
            .output_within(common::PATIENCE);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(stdout_json(&out)["shards"][0]["model_ref"], want, "{name}");
    }
    // A name a reference cannot hold even encoded (a control character)
    // asks for --model-ref instead of guessing.
    let f = dir.path().join("a\tb.bin");
    std::fs::write(&f, model(5000)).unwrap();
    let out = vram()
        .args(["seal", "--device", "mock", "--secret-file"])
        .arg(&s)
        .arg(&f)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pass --model-ref"),
        "{}",
        stderr(&out)
    );
}

/// `--expect-sha256 00` is two hex digits (one byte): the message counts
/// hex digits, not bytes of text.
#[test]
fn a_short_expected_digest_is_measured_in_hex_digits() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = dir.path().join("model.safetensors");
    std::fs::write(&a, model(1000)).unwrap();
    let out = vram()
        .args(["seal", "--device", "mock", "--expect-sha256", "00"])
        .arg(&a)
        .arg("--secret-file")
        .arg(&s)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("has 2 hex digits; expected exactly 64"),
        "{err}"
    );
    assert!(!err.contains("bytes long"), "{err}");
}

/// What is not a regular file is refused at once, named for what it is: a
/// character device is not "empty", and a FIFO does not block the open.
#[test]
fn sealing_a_device_or_a_fifo_is_refused_as_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let out = vram()
        .args(["seal", "--device", "mock", "/dev/zero", "--secret-file"])
        .arg(&s)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("character device, not a regular file"),
        "{err}"
    );
    assert!(!err.contains("is empty"), "{err}");

    let fifo = dir.path().join("model.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .output_within(common::PATIENCE)
        .status;
    assert!(made.success());
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("vram"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1")
        .args(["seal", "--device", "mock"])
        .arg(&fifo)
        .arg("--secret-file")
        .arg(&s)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: 600 polls of 100 ms. Today's code blocks in open(2) forever.
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let Some(status) = status else {
        child.kill().unwrap();
        let _ = child.wait();
        panic!("vram seal of a FIFO did not return");
    };
    let out = common::wait_within(child, common::PATIENCE);
    assert_eq!(status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a FIFO, not a regular file"),
        "{}",
        stderr(&out)
    );
}

/// Under `--json`, an argument clap refuses is named in the error object.
#[test]
fn json_argument_errors_name_the_argument() {
    for (args, name) in [
        (&["devices", "--json", "--bogus"][..], "--bogus"),
        (&["digest", "--json", "--leaf-size"][..], "--leaf-size"),
        (&["digest", "--json"][..], "FILE"),
    ] {
        let out = vram().args(args).output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["class"], "usage", "{args:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(name), "{args:?}: {message}");
    }
}

/// A Kubernetes secret volume of a pod with `fsGroup`: the kubelet makes
/// `defaultMode: 0400` into 0440, group fsGroup (here this process's own
/// group). Sealed; the same file world-readable (0444) is refused.
#[test]
fn a_kubernetes_secret_made_0440_by_fs_group_seals() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("model.safetensors");
    std::fs::write(&a, model(1000)).unwrap();
    for (mode, code) in [(0o440, 0), (0o444, 3)] {
        let vol = tempfile::tempdir().unwrap();
        let secret = kubelet_volume(vol.path(), mode);
        let out = vram()
            .args(["seal", "--device", "mock", "-q"])
            .arg(&a)
            .arg("--secret-file")
            .arg(&secret)
            .output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(code), "{mode:o}: {}", stderr(&out));
    }
}
