//! A loaded secret remembers its file, so that nothing else writes to it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use vram_secrets::WorkerSecret;

#[test]
fn a_secret_loaded_from_a_file_names_it_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.secret");
    fs::write(&path, [0x5a; 32]).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = WorkerSecret::load_file(&path).unwrap();
    assert_eq!(loaded.source_path(), Some(path.as_path()));
    let from_credential =
        WorkerSecret::load_systemd_credential_from(dir.path(), "worker.secret").unwrap();
    assert_eq!(from_credential.source_path(), Some(path.as_path()));
    let inline = WorkerSecret::from_bytes(vec![1u8; 32].into()).unwrap();
    assert_eq!(inline.source_path(), None);
    assert!(
        !format!("{loaded:?}").contains(&*path.to_string_lossy()),
        "Debug shows only the length"
    );
}
