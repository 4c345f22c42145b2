//! File and systemd-credential loading rules.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Test helpers outside #[test] functions unwrap too.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use vram_secrets::{SecretsError, WorkerSecret, MAX_SECRET_LEN, MIN_SECRET_LEN};

const SECRET: &[u8] = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn same_key(a: &WorkerSecret, b: &WorkerSecret) -> bool {
    a.seal_key().key_id() == b.seal_key().key_id()
}

fn reference() -> WorkerSecret {
    WorkerSecret::from_bytes(SECRET.to_vec().into()).unwrap()
}

#[test]
fn mode_0600_and_0400_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mode) in [("a", 0o600), ("b", 0o400)] {
        let path = write(dir.path(), name, SECRET, mode);
        let loaded = WorkerSecret::load_file(&path).unwrap();
        assert!(same_key(&loaded, &reference()));
    }
}

#[test]
fn group_or_other_permissions_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601, 0o777] {
        let path = write(dir.path(), &format!("s{mode:o}"), SECRET, mode);
        let err = WorkerSecret::load_file(&path).unwrap_err();
        assert!(
            matches!(err, SecretsError::TooPermissive { mode: m, .. } if m & 0o777 == mode),
            "{mode:o}: {err:?}"
        );
    }
    let path = write(dir.path(), "open", SECRET, 0o644);
    let text = WorkerSecret::load_file(&path).unwrap_err().to_string();
    let shown = path.display();
    assert_eq!(
        text,
        format!("permissions 0644 for \"{shown}\" are too open; run chmod 600 \"{shown}\" (in Kubernetes, set defaultMode: 0400 on the secret volume)")
    );
}

#[test]
fn directory_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("d");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(
        WorkerSecret::load_file(&sub),
        Err(SecretsError::NotRegularFile {
            found: "directory",
            ..
        })
    ));
}

/// The layout the kubelet writes for a secret volume: the file lives in a
/// timestamped directory, `..data` links to that directory, and the name the
/// pod sees links through `..data`. Returns the path the pod uses.
fn kubelet_volume(dir: &Path, content: &[u8], mode: u32) -> PathBuf {
    let stamp = "..2024_01_01_00_00_00.123456789";
    fs::create_dir(dir.join(stamp)).unwrap();
    write(&dir.join(stamp), "worker-secret", content, mode);
    symlink(stamp, dir.join("..data")).unwrap();
    symlink("..data/worker-secret", dir.join("worker-secret")).unwrap();
    dir.join("worker-secret")
}

#[test]
fn a_kubernetes_secret_volume_is_read_through_its_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubelet_volume(dir.path(), SECRET, 0o400);
    assert!(fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    let loaded = WorkerSecret::load_file(&path).unwrap();
    assert!(same_key(&loaded, &reference()));
    // It remembers both names of the file, and which file it was.
    let real = dir
        .path()
        .join("..2024_01_01_00_00_00.123456789/worker-secret");
    assert_eq!(loaded.source_path(), Some(path.as_path()));
    assert_eq!(
        loaded.resolved_source_path(),
        Some(fs::canonicalize(&real).unwrap().as_path())
    );
    assert_eq!(loaded.protected_paths().len(), 2);
    let meta = fs::metadata(&real).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(loaded.source_file_id(), Some((meta.dev(), meta.ino())));
    // The kubelet updates a secret by writing a new timestamped directory
    // and renaming a new `..data` link over the old one. The path given then
    // names another file; the resolved path still names the one read, so a
    // log pointed at it is still refused.
    let new_stamp = "..2024_02_02_00_00_00.987654321";
    fs::create_dir(dir.path().join(new_stamp)).unwrap();
    write(
        &dir.path().join(new_stamp),
        "worker-secret",
        b"rotated",
        0o400,
    );
    symlink(new_stamp, dir.path().join("..data_tmp")).unwrap();
    fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    let given_now = fs::metadata(&path).unwrap();
    assert_ne!((given_now.dev(), given_now.ino()), (meta.dev(), meta.ino()));
    let still = loaded
        .protected_paths()
        .into_iter()
        .filter_map(|p| fs::metadata(p).ok())
        .any(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
    assert!(still, "the file read is still protected after the switch");
    // A plain file has one name.
    let plain = write(dir.path(), "plain", SECRET, 0o600);
    let loaded = WorkerSecret::load_file(&plain).unwrap();
    assert_eq!(loaded.protected_paths(), vec![plain.as_path()]);
}

#[test]
fn a_kubernetes_secret_with_the_default_mode_0644_is_refused_naming_default_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubelet_volume(dir.path(), SECRET, 0o644);
    let err = WorkerSecret::load_file(&path).unwrap_err();
    assert!(
        matches!(err, SecretsError::TooPermissive { mode, .. } if mode & 0o777 == 0o644),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("defaultMode: 0400"), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
}

#[test]
fn symlinks_to_what_is_not_a_regular_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 3] = [
        ("/dev/zero", "device"),
        ("/dev/null", "device"),
        (".", "directory"),
    ];
    for (i, (target, found)) in cases.into_iter().enumerate() {
        let link = dir.path().join(format!("link-{i}"));
        symlink(target, &link).unwrap();
        let err = WorkerSecret::load_file(&link).unwrap_err();
        assert!(
            matches!(err, SecretsError::NotRegularFile { found: f, .. } if f == found),
            "{target}: {err:?}"
        );
    }
    // A FIFO behind a symlink is refused at once, not waited on: the open
    // does not block for a writer that never comes.
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if status.is_ok_and(|s| s.success()) {
        let link = dir.path().join("fifo-link");
        symlink(&fifo, &link).unwrap();
        for path in [&fifo, &link] {
            let err = WorkerSecret::load_file(path).unwrap_err();
            assert!(
                matches!(err, SecretsError::NotRegularFile { found: "FIFO", .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("/dev/fd/N"), "{err}");
        }
    } else {
        eprintln!("SKIPPED: mkfifo is not available; the FIFO case is not run");
    }
    // A dangling link is not found.
    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("absent"), &dangling).unwrap();
    assert!(matches!(
        WorkerSecret::load_file(&dangling),
        Err(SecretsError::NotFound { .. })
    ));
}

#[test]
fn a_symlink_to_a_loose_file_is_refused_by_the_target_mode() {
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "target", SECRET, 0o640);
    let link = dir.path().join("link");
    symlink(&target, &link).unwrap();
    assert!(matches!(
        WorkerSecret::load_file(&link),
        Err(SecretsError::TooPermissive { .. })
    ));
}

#[test]
fn a_descriptor_path_to_a_regular_file_gets_the_file_rules() {
    // /proc/self/fd/N of an open regular file is that file: mode rules apply.
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good", SECRET, 0o600);
    let loose = write(dir.path(), "loose", SECRET, 0o644);
    use std::os::fd::AsRawFd;
    let good_file = fs::File::open(&good).unwrap();
    let loose_file = fs::File::open(&loose).unwrap();
    let good_fd = PathBuf::from(format!("/proc/self/fd/{}", good_file.as_raw_fd()));
    let loose_fd = PathBuf::from(format!("/dev/fd/{}", loose_file.as_raw_fd()));
    let loaded = WorkerSecret::load_file(&good_fd).unwrap();
    assert!(same_key(&loaded, &reference()));
    assert_eq!(
        loaded.resolved_source_path(),
        Some(fs::canonicalize(&good).unwrap().as_path())
    );
    assert!(matches!(
        WorkerSecret::load_file(&loose_fd),
        Err(SecretsError::TooPermissive { .. })
    ));
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = WorkerSecret::load_file(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, SecretsError::NotFound { .. }), "{err:?}");
}

#[test]
fn empty_short_and_large_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty", b"", 0o600);
    assert!(matches!(
        WorkerSecret::load_file(&empty),
        Err(SecretsError::Empty)
    ));
    let newline_only = write(dir.path(), "nl", b"\n", 0o600);
    assert!(matches!(
        WorkerSecret::load_file(&newline_only),
        Err(SecretsError::TooShort { len: 1, .. })
    ));
    let short = write(dir.path(), "short", &SECRET[..MIN_SECRET_LEN - 1], 0o600);
    assert!(matches!(
        WorkerSecret::load_file(&short),
        Err(SecretsError::TooShort { len: 31, min: 32 })
    ));
    // 30 bytes plus a newline is too short, and the error says how to make one.
    let mut short_nl = SECRET[..MIN_SECRET_LEN - 2].to_vec();
    short_nl.push(b'\n');
    let short_nl = write(dir.path(), "short-nl", &short_nl, 0o600);
    let err = WorkerSecret::load_file(&short_nl).unwrap_err();
    assert!(
        matches!(err, SecretsError::TooShort { len: 31, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("head -c 32 /dev/urandom"), "{text}");
    assert!(text.contains("trailing newline"), "{text}");
    // 31 bytes plus a newline is a 32-byte file: taken whole, newline included.
    let mut nl32 = SECRET[..MIN_SECRET_LEN - 1].to_vec();
    nl32.push(b'\n');
    let path = write(dir.path(), "nl32", &nl32, 0o600);
    assert!(same_key(
        &WorkerSecret::load_file(&path).unwrap(),
        &WorkerSecret::from_bytes(nl32.into()).unwrap()
    ));
    let exact = write(dir.path(), "exact", &SECRET[..MIN_SECRET_LEN], 0o600);
    assert!(WorkerSecret::load_file(&exact).is_ok());

    let max = write(dir.path(), "max", &vec![b'x'; MAX_SECRET_LEN], 0o600);
    assert!(WorkerSecret::load_file(&max).is_ok());
    let large = write(dir.path(), "large", &vec![b'x'; MAX_SECRET_LEN + 1], 0o600);
    assert!(matches!(
        WorkerSecret::load_file(&large),
        Err(SecretsError::TooLarge { len, max }) if len == max + 1
    ));
}

#[test]
fn one_trailing_newline_is_stripped() {
    let dir = tempfile::tempdir().unwrap();
    for (name, suffix) in [("lf", &b"\n"[..]), ("crlf", b"\r\n"), ("none", b"")] {
        let mut content = SECRET.to_vec();
        content.extend_from_slice(suffix);
        let path = write(dir.path(), name, &content, 0o600);
        assert!(
            same_key(&WorkerSecret::load_file(&path).unwrap(), &reference()),
            "{name}"
        );
    }
    // Only one: a second newline is part of the secret.
    let mut content = SECRET.to_vec();
    content.extend_from_slice(b"\n\n");
    let path = write(dir.path(), "two", &content, 0o600);
    assert!(!same_key(
        &WorkerSecret::load_file(&path).unwrap(),
        &reference()
    ));
}

#[test]
fn file_owned_by_another_user_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "other", SECRET, 0o600);
    // Changing a file's owner needs root; without it the rule is covered by the
    // unit tests of the owner check.
    if std::os::unix::fs::chown(&path, Some(54_321), None).is_ok() {
        let err = WorkerSecret::load_file(&path).unwrap_err();
        assert!(
            matches!(
                err,
                SecretsError::WrongOwner {
                    actual_uid: 54_321,
                    ..
                }
            ),
            "{err:?}"
        );
    } else {
        assert!(WorkerSecret::load_file(&path).is_ok());
    }
}

/// The unprivileged uid the owner rule is exercised as.
const NOBODY: u32 = 65_534;
const CHILD_ENV: &str = "VRAM_SECRETS_OWNER_CHILD_DIR";

/// The owner rule as a process that is not root: its own file is accepted
/// (the rule compares with *this process's* uid, not 0), and a readable file
/// of another user is refused naming both uids. Run as root (as CI does), the
/// test re-runs itself as uid 65534 in a child process; run as another user,
/// it checks that user directly. Where neither is possible it says so loudly.
#[test]
fn the_owner_rule_holds_for_a_process_that_is_not_root() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        // The child: check as this (unprivileged) process.
        check_owner_rule_as_this_user(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let euid = this_euid();
    if euid != 0 {
        // Not root: the files are this user's own.
        let own = write(dir.path(), "own", SECRET, 0o600);
        assert!(same_key(
            &WorkerSecret::load_file(&own).unwrap(),
            &reference()
        ));
        eprintln!("owner rule checked as uid {euid} (no root to test another uid)");
        return;
    }
    // Root: prepare a file owned by the child's uid and a readable one of
    // another user, then run this test again as that uid.
    let own = write(dir.path(), "own", SECRET, 0o600);
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    let other = write(dir.path(), "other", SECRET, 0o644);
    std::os::unix::fs::chown(&other, Some(54_321), None).unwrap();
    // A copy of this test binary the child can reach (the build directory
    // may not be open to other users).
    let exe = dir.path().join("child");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "the_owner_rule_holds_for_a_process_that_is_not_root",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .current_dir(dir.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .output();
    match out {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "child as uid {NOBODY} failed:\n{text}"
            );
            assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
        }
        Err(e) => eprintln!(
            "\n!!! SKIPPED: cannot start a child as uid {NOBODY} ({e}); the owner rule \
             against a non-root uid is covered only by the unit tests here !!!\n"
        ),
    }
}

fn check_owner_rule_as_this_user(dir: &Path) {
    let euid = this_euid();
    assert_ne!(euid, 0, "the child must not be root");
    let own = WorkerSecret::load_file(&dir.join("own")).unwrap();
    assert!(same_key(&own, &reference()));
    let err = WorkerSecret::load_file(&dir.join("other")).unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::WrongOwner {
                expected_uid,
                actual_uid: 54_321,
                ..
            } if expected_uid == euid
        ),
        "{err:?}"
    );
}

/// This process's effective uid (the second field of `Uid:` in
/// /proc/self/status).
fn this_euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn systemd_credentials_load_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "worker-secret", SECRET, 0o400);
    let loaded = WorkerSecret::load_systemd_credential_from(dir.path(), "worker-secret").unwrap();
    assert!(same_key(&loaded, &reference()));
    assert!(matches!(
        WorkerSecret::load_systemd_credential_from(dir.path(), "absent"),
        Err(SecretsError::NotFound { .. })
    ));
    for bad in ["", ".", "..", "../worker-secret", "a/b", "/etc/passwd"] {
        assert!(
            matches!(
                WorkerSecret::load_systemd_credential_from(dir.path(), bad),
                Err(SecretsError::InvalidCredentialName { .. })
            ),
            "{bad:?}"
        );
    }
    let err = WorkerSecret::load_systemd_credential_from(dir.path(), "x\n\u{1b}[2J").unwrap_err();
    assert!(!err.to_string().chars().any(char::is_control), "{err}");
}

/// The only test in this binary that touches `CREDENTIALS_DIRECTORY`.
#[test]
fn systemd_credentials_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "worker-secret", SECRET, 0o600);
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    assert!(matches!(
        WorkerSecret::load_systemd_credential("worker-secret"),
        Err(SecretsError::NoCredentialsDirectory)
    ));
    std::env::set_var("CREDENTIALS_DIRECTORY", "");
    assert!(matches!(
        WorkerSecret::load_systemd_credential("worker-secret"),
        Err(SecretsError::NoCredentialsDirectory)
    ));
    std::env::set_var("CREDENTIALS_DIRECTORY", dir.path());
    let loaded = WorkerSecret::load_systemd_credential("worker-secret").unwrap();
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    assert!(same_key(&loaded, &reference()));
}

#[test]
fn hostile_paths_are_escaped_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x\n[INFO] loaded worker secret\u{202e}");
    let err = WorkerSecret::load_file(&path).unwrap_err();
    let text = err.to_string();
    assert!(!text.chars().any(char::is_control), "{text}");
    assert!(
        text.contains(r"x\u{a}[INFO] loaded worker secret\u{202e}"),
        "{text}"
    );
}

/// The README's recipe, `head -c 32 /dev/urandom > worker.secret`, works for
/// every possible last byte (it used to fail one time in 256, when the last
/// byte was 0x0a and was stripped as a newline): 2,000 generated 32-byte
/// secrets, with the endings that once mattered forced in, all load, byte for
/// byte. Longer files ending in a newline still lose exactly that newline.
#[test]
fn the_documented_recipe_works_for_2000_generated_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let endings: [&[u8]; 6] = [b"", b"\n", b"\r", b"\r\n", b" ", b"\n\n"];
    for i in 0..2000usize {
        let mut raw: Vec<u8> = (0..MIN_SECRET_LEN).map(|_| next() as u8).collect();
        // Force an ending into most of them: 0x0a, 0x0d, CR LF, spaces.
        let ending = endings[i % endings.len()];
        let at = MIN_SECRET_LEN - ending.len();
        raw[at..].copy_from_slice(ending);
        let path = write(dir.path(), "worker.secret", &raw, 0o600);
        let loaded = WorkerSecret::load_file(&path)
            .unwrap_or_else(|e| panic!("secret {i} ({raw:02x?}) refused: {e}"));
        let verbatim = WorkerSecret::from_bytes(raw.clone().into()).unwrap();
        assert!(same_key(&loaded, &verbatim), "secret {i} was altered");

        // A 64-byte binary secret followed by a newline (what `echo` adds)
        // loses that newline, as it always did.
        let mut long = raw.repeat(2);
        long.push(b'\n');
        let path = write(dir.path(), "long.secret", &long, 0o600);
        // (A final CR before it makes the pair a CR LF, removed as one.)
        let cut = if long.ends_with(b"\r\n") { 2 } else { 1 };
        let trimmed = WorkerSecret::from_bytes(long[..long.len() - cut].to_vec().into()).unwrap();
        assert!(
            same_key(&WorkerSecret::load_file(&path).unwrap(), &trimmed),
            "{i}"
        );
    }
}

/// A pipe named as a descriptor (what a shell's `<(...)` passes) is read to
/// its end with the size rules; the same pipe behind any other name is not.
#[test]
fn pipes_are_read_only_through_descriptor_paths() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let pipe_with = |content: Vec<u8>| {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let feeder = std::thread::spawn(move || {
            // The reader may stop early (too large): a broken pipe is fine.
            let _ = writer.write_all(&content);
        });
        (reader, feeder)
    };
    let (reader, feeder) = pipe_with([SECRET, b"\n"].concat());
    let path = PathBuf::from(format!("/proc/self/fd/{}", reader.as_raw_fd()));
    let loaded = WorkerSecret::load_file(&path).unwrap();
    feeder.join().unwrap();
    assert!(same_key(&loaded, &reference()), "one newline stripped");
    assert_eq!(loaded.source_path(), None, "a pipe is no file to protect");
    assert!(loaded.protected_paths().is_empty());

    let (reader, feeder) = pipe_with(SECRET[..MIN_SECRET_LEN - 1].to_vec());
    let path = PathBuf::from(format!("/dev/fd/{}", reader.as_raw_fd()));
    assert!(matches!(
        WorkerSecret::load_file(&path),
        Err(SecretsError::TooShort { len: 31, .. })
    ));
    feeder.join().unwrap();

    let (reader, feeder) = pipe_with(Vec::new());
    let path = PathBuf::from(format!("/dev/fd/{}", reader.as_raw_fd()));
    assert!(matches!(
        WorkerSecret::load_file(&path),
        Err(SecretsError::Empty)
    ));
    feeder.join().unwrap();

    let (reader, feeder) = pipe_with(vec![b'x'; MAX_SECRET_LEN + 10]);
    let path = PathBuf::from(format!("/dev/fd/{}", reader.as_raw_fd()));
    assert!(matches!(
        WorkerSecret::load_file(&path),
        Err(SecretsError::TooLarge { .. })
    ));
    drop(reader);
    feeder.join().unwrap();

    let (reader, feeder) = pipe_with(vec![b'y'; MAX_SECRET_LEN]);
    let path = PathBuf::from(format!("/dev/fd/{}", reader.as_raw_fd()));
    assert!(WorkerSecret::load_file(&path).is_ok(), "exactly the limit");
    feeder.join().unwrap();

    // The same kind of pipe through a symlink of another name is refused.
    let dir = tempfile::tempdir().unwrap();
    let (reader, feeder) = pipe_with(SECRET.to_vec());
    let link = dir.path().join("secret");
    symlink(format!("/proc/self/fd/{}", reader.as_raw_fd()), &link).unwrap();
    assert!(matches!(
        WorkerSecret::load_file(&link),
        Err(SecretsError::NotRegularFile { found: "FIFO", .. })
    ));
    drop(reader);
    feeder.join().unwrap();
}

/// Sets the group of the regular file `path` to `gid`.
fn chgrp(path: &Path, gid: u32) {
    std::os::unix::fs::chown(path, None, Some(gid)).unwrap();
}

/// This process's effective gid, from `/proc/self/status`.
fn own_gid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// A group this process is not in, or `None` where this process may not
/// give a file away to such a group (it is not root).
fn foreign_gid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let euid: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    (euid == 0).then_some(65_533)
}

/// With `fsGroup`, the kubelet makes `defaultMode: 0400` into 0440, group
/// `fsGroup`, which the pod's processes hold as a supplementary group. That
/// file, in that layout, with a group no other user is in, is accepted.
#[test]
fn a_kubernetes_secret_made_0440_for_the_pods_own_group_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubelet_volume(dir.path(), SECRET, 0o440);
    let real = dir
        .path()
        .join("..2024_01_01_00_00_00.123456789/worker-secret");
    chgrp(&real, own_gid());
    fs::set_permissions(&real, fs::Permissions::from_mode(0o440)).unwrap();
    let loaded = WorkerSecret::load_file(&path).unwrap();
    assert!(same_key(&loaded, &reference()));
}

/// What the relaxation does not cover: world-readable, group-writable, a
/// group this process is not in, and a 0440 file outside the kubelet's
/// layout (a plain file, or a `..data` that points elsewhere).
#[test]
fn group_readable_secrets_outside_that_rule_are_refused() {
    let gid = own_gid();
    for mode in [0o444, 0o460, 0o450, 0o640 | 0o004] {
        let dir = tempfile::tempdir().unwrap();
        let path = kubelet_volume(dir.path(), SECRET, mode);
        let err = WorkerSecret::load_file(&path).unwrap_err();
        assert!(
            matches!(err, SecretsError::TooPermissive { mode: m, .. } if m & 0o777 == mode),
            "{mode:o}: {err:?}"
        );
    }
    if let Some(foreign) = foreign_gid() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubelet_volume(dir.path(), SECRET, 0o440);
        let real = dir
            .path()
            .join("..2024_01_01_00_00_00.123456789/worker-secret");
        chgrp(&real, foreign);
        fs::set_permissions(&real, fs::Permissions::from_mode(0o440)).unwrap();
        let err = WorkerSecret::load_file(&path).unwrap_err();
        assert!(matches!(err, SecretsError::TooPermissive { .. }), "{err:?}");
    }
    // Outside the layout: a plain 0440 file of our own group.
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "plain", SECRET, 0o440);
    chgrp(&plain, gid);
    assert!(matches!(
        WorkerSecret::load_file(&plain),
        Err(SecretsError::TooPermissive { .. })
    ));
    // A timestamped directory that `..data` does not point to.
    let dir = tempfile::tempdir().unwrap();
    let path = kubelet_volume(dir.path(), SECRET, 0o440);
    fs::create_dir(dir.path().join("..other")).unwrap();
    fs::remove_file(dir.path().join("..data")).unwrap();
    symlink("..other", dir.path().join("..data")).unwrap();
    symlink(
        "..2024_01_01_00_00_00.123456789/worker-secret",
        dir.path().join("direct"),
    )
    .unwrap();
    let _ = path;
    assert!(matches!(
        WorkerSecret::load_file(&dir.path().join("direct")),
        Err(SecretsError::TooPermissive { .. })
    ));
}
