//! Inputs from outside (issue 13): verification policies a caller asks for,
//! handles that come back from clients (possibly through JSON tools that read
//! numbers as f64), and model files that change while they are sealed.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unused_qualifications
)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use vram_residency::SealSource;
use vram_residency::{ErrorClass, ModelShardHandle, SealRequest, VerifyPolicy, VramError};
use vram_validation::ModelRef;

const LEAF: u64 = 64 * 1024;

#[test]
fn a_sample_of_zero_leaves_is_refused_on_every_call_and_never_audited_as_verified() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(5 * LEAF as usize, 3)),
        )
        .unwrap();
    f.device.flip_bits(f.last_buffer(), 10, 1).unwrap();
    let verified_before = f.audit_count("seal_verified");
    let err = f
        .manager
        .verify_with(&shard, VerifyPolicy::Sampled { leaves: 0 })
        .unwrap_err();
    assert!(matches!(err, VramError::InvalidPolicy { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::InvalidInput);
    assert!(err.to_string().contains("sampled:0"), "{err}");
    assert_eq!(f.audit_count("seal_verified"), verified_before);
    // Refusing the request says nothing about the bytes; a real check does.
    assert!(!shard.is_compromised());
    assert!(f.manager.verify_sealed(&shard).is_err());
}

#[test]
fn a_sample_above_the_leaf_count_is_capped_to_a_full_verification() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(5 * LEAF as usize + 7, 4)),
        )
        .unwrap();
    let leaves = shard.leaf_hashes().len() as u64;
    assert_eq!(leaves, 6);
    for k in [6u32, 7, 1_000_000, u32::MAX] {
        // u32::MAX used to reserve 32 GiB of leaf indices before reading one.
        let report = f
            .manager
            .verify_with(&shard, VerifyPolicy::Sampled { leaves: k })
            .unwrap();
        assert_eq!(report.policy, VerifyPolicy::Full, "k = {k}");
        assert_eq!(report.leaves_checked, leaves, "k = {k}");
        assert_eq!(report.bytes_checked, shard.vram_bytes());
    }
    // Below the leaf count it stays a sample.
    let report = f
        .manager
        .verify_with(&shard, VerifyPolicy::Sampled { leaves: 5 })
        .unwrap();
    assert_eq!(report.policy, VerifyPolicy::Sampled { leaves: 5 });
    assert_eq!(report.leaves_checked, 5);
    // And the capped run still catches corruption, in any leaf.
    f.device
        .flip_bits(f.last_buffer(), 5 * LEAF + 1, 1)
        .unwrap();
    let err = f
        .manager
        .verify_with(&shard, VerifyPolicy::Sampled { leaves: u32::MAX })
        .unwrap_err();
    assert_eq!(err.corrupt_ranges()[0].leaf_index, 5);
}

#[test]
fn a_handle_is_accepted_only_in_its_canonical_spelling() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(10_000, 1)),
        )
        .unwrap();
    let genuine = shard.handle();
    f.manager.check_handle(&genuine).unwrap();

    let mut upper_digest = genuine.clone();
    upper_digest.digest = upper_digest.digest.to_uppercase();
    assert_ne!(upper_digest.digest, genuine.digest);
    let mut upper_signature = genuine.clone();
    upper_signature.signature = upper_signature.signature.to_uppercase();
    for h in [&upper_digest, &upper_signature] {
        assert!(
            matches!(
                f.manager.check_handle(h),
                Err(VramError::SealInvalid { .. })
            ),
            "{h:?}"
        );
        // The two checks agree.
        assert!(f.manager.verify_handle(h, &shard).is_err());
    }
}

/// Passes every number of a JSON value through an f64 and prints it back as
/// JavaScript's `JSON.stringify` (and jq) do: integral values as integers.
fn through_f64(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            if x.fract() == 0.0 && x.abs() < 1e21 && x >= 0.0 {
                Value::from(x as u64)
            } else {
                Value::from(x)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(through_f64).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, through_f64(v))).collect())
        }
        other => other,
    }
}

#[test]
fn an_integer_sealed_at_would_not_survive_that_tool() {
    // What the old handle format lost: the nanoseconds are rounded.
    let ns: u64 = 1_796_050_449_902_890_636;
    assert_ne!(through_f64(serde_json::json!(ns)), serde_json::json!(ns));
}

#[test]
fn a_handle_survives_a_json_tool_that_reads_numbers_as_f64() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(10_000, 2)),
        )
        .unwrap();
    let genuine = shard.handle();
    assert!(
        genuine.sealed_at > 1 << 53,
        "a current time is above 2^53 ns"
    );
    let json = serde_json::to_string(&genuine).unwrap();
    assert!(
        json.contains(&format!("\"sealed_at\":\"{}\"", genuine.sealed_at)),
        "{json}"
    );
    let mangled = through_f64(serde_json::from_str(&json).unwrap());
    let back: ModelShardHandle =
        serde_json::from_str(&serde_json::to_string(&mangled).unwrap()).unwrap();
    assert_eq!(back, genuine);
    f.manager.check_handle(&back).unwrap();
    f.manager.verify_handle(&back, &shard).unwrap();

    // A handle written before, with an integer, is still read exactly.
    let old = json.replace(
        &format!("\"sealed_at\":\"{}\"", genuine.sealed_at),
        &format!("\"sealed_at\":{}", genuine.sealed_at),
    );
    let back: ModelShardHandle = serde_json::from_str(&old).unwrap();
    assert_eq!(back, genuine);
    // Anything but digits is refused.
    for bad in [
        "\"+1\"",
        "\"1e18\"",
        "\"\"",
        "\" 1\"",
        "-1",
        "1.5",
        "\"99999999999999999999999\"",
    ] {
        let text = json.replace(
            &format!("\"sealed_at\":\"{}\"", genuine.sealed_at),
            &format!("\"sealed_at\":{bad}"),
        );
        assert!(
            serde_json::from_str::<ModelShardHandle>(&text).is_err(),
            "{bad}"
        );
    }
}

/// Seals a 4 MiB file (16 staging pieces) and calls `change` on the file once,
/// after the first piece was read.
fn seal_while_changing(change: impl Fn(&std::fs::File) + Sync) -> VramError {
    let f = fixture(64 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, pattern(4 << 20, 9)).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let done = AtomicBool::new(false);
    let req = SealRequest::new(ModelRef::new("file:model.bin").unwrap(), 0);
    let err = f
        .manager
        .seal(
            &req,
            SealSource::File {
                file: &file,
                progress: Some(&|_| {
                    if !done.swap(true, Ordering::SeqCst) {
                        change(&file);
                    }
                }),
            },
        )
        .unwrap_err();
    f.assert_no_leaks();
    assert_eq!(f.audit_count("vram_sealed"), 0);
    err
}

#[test]
fn a_file_truncated_or_grown_while_sealed_is_one_error_of_one_class() {
    let truncated = seal_while_changing(|file| file.set_len(1 << 20).unwrap());
    let grown = seal_while_changing(|file| file.set_len(5 << 20).unwrap());
    for (what, err) in [("truncated", &truncated), ("grown", &grown)] {
        assert!(
            matches!(err, VramError::LengthMismatch { announced, .. } if *announced == 4 << 20),
            "{what}: {err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Environment, "{what}");
        assert!(
            err.to_string().contains("changed while it was sealed"),
            "{what}: {err}"
        );
    }
    assert!(matches!(truncated, VramError::LengthMismatch { read, .. } if read == 1 << 20));
    assert!(matches!(grown, VramError::LengthMismatch { read, .. } if read == 5 << 20));
}
