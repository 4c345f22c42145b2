//! vram-signing's bundle parser on arbitrary bytes: never a panic, an
//! accepted bundle only with a signature that verifies under the fixture key,
//! and every error message one bounded line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vram_signing::{verify_bundle, PublicKey};

const KEY: &[u8] = include_bytes!("../../vram-signing/tests/fixtures/p256.pub");

fuzz_target!(|data: &[u8]| {
    let Ok(key) = PublicKey::from_pem(KEY) else {
        return;
    };
    match verify_bundle(data, &key) {
        Ok(model) => {
            // Only the genuine statement (or one the key's owner signed)
            // gets here; it is consistent by construction.
            assert!(!model.resources().is_empty());
            assert_eq!(model.publisher_key_sha256(), key.fingerprint());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && msg.len() < 4096, "{msg:?}");
        }
    }
    let _ = PublicKey::from_pem(data);
});
