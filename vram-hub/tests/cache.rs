//! A hub cache laid out as `huggingface_hub` writes it (refs, snapshots of
//! relative links, blobs named by SHA-256 and by git blob id; a second
//! revision sharing blobs with the first), built from generated files.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use vram_hub::{cache_dir_from, git_blob_id, Expected, FileCheck, HubCache, HubError, HubRef};

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `content` as a blob of `repo_dir` (named as the hub names it: by
/// SHA-256 when `lfs`, else by git blob id) and links `snapshot/name` to it.
fn add(repo_dir: &Path, commit: &str, name: &str, content: &[u8], lfs: bool) -> PathBuf {
    let blob = if lfs {
        hex(ring::digest::digest(&ring::digest::SHA256, content).as_ref())
    } else {
        hex(&git_blob_id(content, content.len() as u64).unwrap())
    };
    let blobs = repo_dir.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob_path = blobs.join(&blob);
    std::fs::write(&blob_path, content).unwrap();
    let link = repo_dir.join("snapshots").join(commit).join(name);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let depth = name.matches('/').count() + 2;
    let target = format!("{}blobs/{blob}", "../".repeat(depth));
    std::os::unix::fs::symlink(target, &link).unwrap();
    blob_path
}

struct Cache {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    weights: PathBuf,
}

fn weight_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn cache() -> Cache {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let repo = root.join("models--org--tiny");
    let weights = add(&repo, C1, "model.safetensors", &weight_bytes(), true);
    add(&repo, C1, "config.json", b"{\"hidden\": 8}\n", false);
    add(
        &repo,
        C1,
        "1_Pooling/config.json",
        b"{\"mean\": true}\n",
        false,
    );
    // Revision 2 shares the weights blob and changes the config.
    add(&repo, C2, "model.safetensors", &weight_bytes(), true);
    add(&repo, C2, "config.json", b"{\"hidden\": 16}\n", false);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), C1).unwrap();
    std::fs::write(repo.join("refs/dev"), format!("{C2}\n")).unwrap();
    Cache {
        _dir: dir,
        root,
        repo,
        weights,
    }
}

fn resolve(c: &Cache, r: &str) -> Result<vram_hub::Snapshot, HubError> {
    HubCache::at(&c.root).resolve(&HubRef::parse(r).unwrap())
}

#[test]
fn a_clean_model_resolves_with_the_digests_its_blob_names_carry() {
    let c = cache();
    let s = resolve(&c, "hf://org/tiny").unwrap();
    assert_eq!(s.commit, C1);
    assert_eq!(s.reference(), format!("hf://org/tiny@{C1}"));
    let names: Vec<&str> = s.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["1_Pooling/config.json", "config.json", "model.safetensors"]
    );
    let w = &s.files[2];
    assert!(w.is_lfs());
    assert_eq!(w.len, 300_000);
    let sha = ring::digest::digest(&ring::digest::SHA256, &weight_bytes());
    assert_eq!(
        w.expected,
        Some(Expected::Sha256(sha.as_ref().try_into().unwrap()))
    );
    assert!(matches!(
        s.files[1].expected,
        Some(Expected::GitBlobSha1(_))
    ));
    for f in &s.files {
        assert_eq!(f.check().unwrap(), Some(FileCheck::Intact), "{}", f.name);
    }
}

#[test]
fn revisions_by_branch_and_by_commit_share_blobs() {
    let c = cache();
    let dev = resolve(&c, "hf://org/tiny@dev").unwrap();
    assert_eq!(dev.commit, C2);
    assert_eq!(dev.files.len(), 2);
    let by_commit = resolve(&c, &format!("hf://org/tiny@{C1}")).unwrap();
    assert_eq!(by_commit.commit, C1);
    let main = resolve(&c, "hf://org/tiny").unwrap();
    assert_eq!(
        dev.files
            .iter()
            .find(|f| f.name == "model.safetensors")
            .unwrap()
            .path,
        main.files
            .iter()
            .find(|f| f.name == "model.safetensors")
            .unwrap()
            .path,
    );
}

#[test]
fn an_unknown_revision_lists_the_revisions_present() {
    let c = cache();
    let e = resolve(&c, "hf://org/tiny@nope").unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, HubError::UnknownRevision { .. }), "{text}");
    for present in ["dev", "main", C1, C2] {
        assert!(text.contains(present), "{text}");
    }
    let missing = resolve(&c, &format!("hf://org/tiny@{}", "3".repeat(40))).unwrap_err();
    assert!(matches!(missing, HubError::UnknownRevision { .. }));
    assert!(matches!(
        resolve(&c, "hf://org/other").unwrap_err(),
        HubError::NotCached { .. }
    ));
}

#[test]
fn a_flipped_byte_and_a_blob_of_another_length_are_named_corrupt() {
    let c = cache();
    let mut bytes = std::fs::read(&c.weights).unwrap();
    bytes[12_345] ^= 0x40;
    std::fs::write(&c.weights, &bytes).unwrap();
    let s = resolve(&c, "hf://org/tiny").unwrap();
    let w = s
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .unwrap();
    assert!(matches!(
        w.check().unwrap(),
        Some(FileCheck::Corrupt { .. })
    ));
    // A small file replaced by one of another length.
    let cfg = s.files.iter().find(|f| f.name == "config.json").unwrap();
    std::fs::write(&cfg.path, b"{\"hidden\": 8, \"x\": 1}\n").unwrap();
    let s = resolve(&c, "hf://org/tiny").unwrap();
    let cfg = s.files.iter().find(|f| f.name == "config.json").unwrap();
    assert!(matches!(
        cfg.check().unwrap(),
        Some(FileCheck::Corrupt { .. })
    ));
}

#[test]
fn a_missing_blob_is_a_dangling_link_named_by_file() {
    let c = cache();
    std::fs::remove_file(&c.weights).unwrap();
    let e = resolve(&c, "hf://org/tiny").unwrap_err();
    assert!(matches!(e, HubError::DanglingLink { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"));
}

#[test]
fn a_link_out_of_the_blobs_directory_is_refused() {
    let c = cache();
    let outside = c.root.parent().unwrap().join("secret");
    std::fs::write(&outside, b"not a model").unwrap();
    let link = c.repo.join("snapshots").join(C1).join("evil.bin");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let e = resolve(&c, "hf://org/tiny").unwrap_err();
    assert!(matches!(e, HubError::EscapingLink { .. }), "{e}");
    assert!(e.to_string().contains("evil.bin"));
    // Inside the cache but not in blobs/ is refused too.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../../refs/main", &link).unwrap();
    assert!(matches!(
        resolve(&c, "hf://org/tiny").unwrap_err(),
        HubError::EscapingLink { .. }
    ));
}

#[test]
fn hostile_file_names_are_escaped_in_errors() {
    let c = cache();
    let link = c
        .repo
        .join("snapshots")
        .join(C1)
        .join("a\u{1b}]0;x\u{7}\nb");
    std::os::unix::fs::symlink("../../blobs/missing", &link).unwrap();
    let text = resolve(&c, "hf://org/tiny").unwrap_err().to_string();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\n') && !text.contains('\u{7}'),
        "{text}"
    );
}

#[test]
fn hf_hub_cache_wins_over_hf_home_over_xdg_over_home() {
    fn env<'a>(
        pairs: &'a [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }
    const ALL: [(&str, &str); 4] = [
        ("HF_HUB_CACHE", "/a"),
        ("HF_HOME", "/b"),
        ("XDG_CACHE_HOME", "/c"),
        ("HOME", "/d"),
    ];
    assert_eq!(cache_dir_from(env(&ALL)), Some(PathBuf::from("/a")));
    assert_eq!(
        cache_dir_from(env(&ALL[1..])),
        Some(PathBuf::from("/b/hub"))
    );
    assert_eq!(
        cache_dir_from(env(&ALL[2..])),
        Some(PathBuf::from("/c/huggingface/hub"))
    );
    assert_eq!(
        cache_dir_from(env(&ALL[3..])),
        Some(PathBuf::from("/d/.cache/huggingface/hub"))
    );
    assert_eq!(
        cache_dir_from(env(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/b")])),
        Some(PathBuf::from("/b/hub"))
    );
    assert_eq!(cache_dir_from(env(&[])), None);
}

/// A plain file in a snapshot of links has no blob name, so nothing says
/// what it should hold: refused by name unless the cache is said to be one
/// written without links, where it is taken with no expected digest.
#[test]
fn a_plain_file_in_a_snapshot_of_links_is_refused_unless_said_otherwise() {
    let c = cache();
    let link = c.repo.join("snapshots").join(C1).join("config.json");
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, b"{\"hidden\": 9}\n").unwrap();
    let e = resolve(&c, "hf://org/tiny").unwrap_err();
    assert!(matches!(e, HubError::PlainFile { .. }), "{e}");
    assert!(
        e.to_string().contains("`config.json` is a plain file"),
        "{e}"
    );
    let s = HubCache::at(&c.root)
        .without_links(true)
        .resolve(&HubRef::parse("hf://org/tiny").unwrap())
        .unwrap();
    let config = s.files.iter().find(|f| f.name == "config.json").unwrap();
    assert_eq!(config.expected, None);
    assert_eq!(config.check().unwrap(), None);
}
