//! Seal format v3: a seal may carry the provenance of its bytes (which
//! signed model statement, and which file of it, they were checked against),
//! and every check of the seal covers it. Seals without one stay v2.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use vram_crypto::{MAX_PROVENANCE_NAME_LEN as SEAL_MAX_NAME_LEN, SEAL_FORMAT_V2, SEAL_FORMAT_V3};
use vram_residency::SealSource;
use vram_residency::{ModelShardHandle, Provenance, SealRequest, VramError};
use vram_validation::{ModelRef, ProvenanceName, ShardPosition, MAX_PROVENANCE_NAME_LEN};

fn provenance(resource: &str) -> Provenance {
    Provenance::new([0x11; 32], [0x22; 32], "org/model", resource).unwrap()
}

fn request(resource: &str) -> SealRequest {
    let mut r = SealRequest::new(ModelRef::new("hf://org/model@main").unwrap(), 0);
    r.provenance = Some(provenance(resource));
    r
}

#[test]
fn a_seal_with_provenance_is_v3_and_its_handle_carries_it() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &request("sub/tokenizer.json"),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap();
    assert_eq!(shard.seal_version(), SEAL_FORMAT_V3);
    assert_eq!(shard.provenance(), Some(&provenance("sub/tokenizer.json")));
    f.manager.verify_sealed(&shard).unwrap();
    let handle = shard.handle();
    assert_eq!(handle.seal_version, SEAL_FORMAT_V3);
    assert_eq!(f.manager.check_handle(&handle).unwrap(), SEAL_FORMAT_V3);
    f.manager.verify_handle(&handle, &shard).unwrap();

    let json: serde_json::Value = serde_json::to_value(&handle).unwrap();
    assert_eq!(
        json["provenance"],
        serde_json::json!({
            "publisher_key_sha256": "11".repeat(32),
            "statement_sha256": "22".repeat(32),
            "model_name": "org/model",
            "resource_name": "sub/tokenizer.json",
        })
    );
    let back: ModelShardHandle = serde_json::from_value(json).unwrap();
    assert_eq!(back, handle);

    // The vram_sealed record names the provenance too.
    let sealed: Vec<String> = f
        .audit_lines()
        .into_iter()
        .filter(|l| l.contains("\"type\":\"vram_sealed\""))
        .collect();
    assert_eq!(sealed.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&sealed[0]).unwrap();
    let event = &record["event"];
    assert_eq!(event["provenance"]["statement_sha256"], "22".repeat(32));
    assert_eq!(event["provenance"]["resource_name"], "sub/tokenizer.json");
}

/// Without a provenance nothing changes: the seal is v2 and neither the
/// handle's JSON nor the `vram_sealed` record has a `provenance` key.
#[test]
fn a_seal_without_provenance_stays_v2() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 2)),
        )
        .unwrap();
    assert_eq!(shard.seal_version(), SEAL_FORMAT_V2);
    assert_eq!(shard.provenance(), None);
    let handle = shard.handle();
    assert_eq!(handle.seal_version, SEAL_FORMAT_V2);
    assert_eq!(f.manager.check_handle(&handle).unwrap(), SEAL_FORMAT_V2);
    let json = serde_json::to_string(&handle).unwrap();
    assert!(!json.contains("provenance"), "{json}");
    let back: ModelShardHandle = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    for line in f.audit_lines() {
        assert!(!line.contains("provenance"), "{line}");
    }
}

/// A handle whose provenance was edited (another statement, publisher, model
/// or file), dropped, added or relabelled to another version fails
/// `check_handle`.
#[test]
fn an_edited_provenance_fails_check_handle() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &request("model.safetensors"),
            SealSource::Bytes(&pattern(100_000, 3)),
        )
        .unwrap();
    let handle = shard.handle();
    f.manager.check_handle(&handle).unwrap();
    let edits: [fn(&mut ModelShardHandle); 9] = [
        |h| prov(h).statement_sha256[0] ^= 1,
        |h| prov(h).statement_sha256 = [0x33; 32],
        |h| prov(h).publisher_key_sha256[31] ^= 0x80,
        |h| prov(h).model_name = ProvenanceName::new("org/other").unwrap(),
        |h| prov(h).resource_name = ProvenanceName::new("other.safetensors").unwrap(),
        |h| h.provenance = None,
        |h| h.seal_version = SEAL_FORMAT_V2,
        |h| {
            h.provenance = None;
            h.seal_version = SEAL_FORMAT_V2;
        },
        |h| h.seal_version = 4,
    ];
    for edit in edits {
        let mut h = handle.clone();
        edit(&mut h);
        assert!(
            matches!(
                f.manager.check_handle(&h),
                Err(VramError::SealInvalid { .. })
            ),
            "{h:?}"
        );
        assert!(f.manager.verify_handle(&h, &shard).is_err());
    }
    // A v2 handle given a provenance it was not sealed with fails too.
    let plain = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 4)),
        )
        .unwrap();
    for version in [SEAL_FORMAT_V2, SEAL_FORMAT_V3] {
        let mut h = plain.handle();
        h.provenance = Some(provenance("model.safetensors"));
        h.seal_version = version;
        assert!(matches!(
            f.manager.check_handle(&h),
            Err(VramError::SealInvalid { .. })
        ));
    }
    // The untouched handle still passes.
    f.manager.verify_handle(&handle, &shard).unwrap();
}

fn prov(h: &mut ModelShardHandle) -> &mut Provenance {
    h.provenance.as_mut().unwrap()
}

/// Handles are read strictly: upper-case or short hex, a control character
/// in a name or an unknown key in the provenance object do not parse.
#[test]
fn handle_provenance_is_read_strictly() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &request("sub/tokenizer.json"),
            SealSource::Bytes(&pattern(10_000, 5)),
        )
        .unwrap();
    let good = serde_json::to_value(shard.handle()).unwrap();
    let edits: [fn(&mut serde_json::Value); 5] = [
        |v| v["provenance"]["publisher_key_sha256"] = "AB".repeat(32).into(),
        |v| v["provenance"]["statement_sha256"] = "22".repeat(31).into(),
        |v| v["provenance"]["model_name"] = "org\nmodel".into(),
        |v| v["provenance"]["resource_name"] = "".into(),
        |v| v["provenance"]["extra"] = 1.into(),
    ];
    for edit in edits {
        let mut v = good.clone();
        edit(&mut v);
        assert!(
            serde_json::from_value::<ModelShardHandle>(v.clone()).is_err(),
            "{v}"
        );
    }
}

#[test]
fn provenance_names_are_validated() {
    assert!(Provenance::new([0; 32], [0; 32], "m", ".").is_ok());
    assert!(Provenance::new([0; 32], [0; 32], "", ".").is_err());
    assert!(Provenance::new([0; 32], [0; 32], "m", "a\u{7}").is_err());
    let long = "a".repeat(MAX_PROVENANCE_NAME_LEN + 1);
    assert!(Provenance::new([0; 32], [0; 32], &long, ".").is_err());
    // The validation limit is the seal's limit.
    assert_eq!(MAX_PROVENANCE_NAME_LEN, SEAL_MAX_NAME_LEN);
}

/// The parts of one set sealed from one signed statement (different files)
/// pass `check_handle_set`; a part from another statement does not.
#[test]
fn a_set_must_name_one_signed_statement() {
    let f = fixture(64 * MIB);
    let set_id = [0x5e; 16];
    let part = |i: u32, p: Provenance| {
        let mut r = request("unused");
        r.position = ShardPosition::new(i, 2).unwrap();
        r.set_id = Some(set_id);
        r.provenance = Some(p);
        f.manager
            .seal(&r, SealSource::Bytes(&pattern(10_000, 6 + i as u8)))
            .unwrap()
    };
    let a = part(0, provenance("model-00001.safetensors"));
    let b = part(1, provenance("model-00002.safetensors"));
    let handles = [a.handle(), b.handle()];
    assert_eq!(
        f.manager.check_handle_set(&handles).unwrap(),
        SEAL_FORMAT_V3
    );
    let mut other = provenance("model-00002.safetensors");
    other.statement_sha256 = [0x99; 32];
    let c = part(1, other);
    f.manager.check_handle(&c.handle()).unwrap();
    assert!(matches!(
        f.manager.check_handle_set(&[a.handle(), c.handle()]),
        Err(VramError::InvalidShardSet { .. })
    ));
}
