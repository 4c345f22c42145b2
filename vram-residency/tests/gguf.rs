//! GGUF shards: the tensor table read from the sealed header leaves, as for
//! safetensors; typed views per tensor (name, ggml type, shape, bytes); a
//! corrupt byte named by its tensor in the refusal and the audit record.
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
use vram_residency::{Dtype, LeasePolicy, SealRequest, SealSource, VramError};

/// A GGUF v3 file (alignment 32): metadata with a vocabulary of `tokens`
/// entries, then the tensors `(name, ggml type, dims, bytes)` in order.
fn gguf(tokens: usize, tensors: &[(&str, u32, &[u64], Vec<u8>)]) -> Vec<u8> {
    let mut h = b"GGUF".to_vec();
    let s = |h: &mut Vec<u8>, text: &str| {
        h.extend_from_slice(&(text.len() as u64).to_le_bytes());
        h.extend_from_slice(text.as_bytes());
    };
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    h.extend_from_slice(&2u64.to_le_bytes());
    s(&mut h, "general.architecture");
    h.extend_from_slice(&8u32.to_le_bytes());
    s(&mut h, "llama");
    s(&mut h, "tokenizer.ggml.tokens");
    h.extend_from_slice(&9u32.to_le_bytes());
    h.extend_from_slice(&8u32.to_le_bytes());
    h.extend_from_slice(&(tokens as u64).to_le_bytes());
    for i in 0..tokens {
        s(&mut h, &format!("token-{i}"));
    }
    let mut offset = 0u64;
    for (name, ty, dims, data) in tensors {
        s(&mut h, name);
        h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            h.extend_from_slice(&d.to_le_bytes());
        }
        h.extend_from_slice(&ty.to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        offset += (data.len() as u64).div_ceil(32) * 32;
    }
    h.resize(h.len().div_ceil(32) * 32, 0);
    for (_, _, _, data) in tensors {
        h.extend_from_slice(data);
        h.resize(h.len().div_ceil(32) * 32, 0);
    }
    h
}

const Q6_K: u32 = 14;
const Q4_1: u32 = 3;
const F32: u32 = 0;

/// A header of about 160 KiB (more than two 64 KiB leaves, more than the
/// first read), a Q4_1 embedding, a Q6_K matrix over two leaves, a norm.
fn model() -> (Vec<u8>, Vec<u8>) {
    let ffn = pattern(600 * 210, 7);
    let file = gguf(
        10_000,
        &[
            (
                "token_embd.weight",
                Q4_1,
                &[256, 64],
                pattern(64 * 8 * 20, 1),
            ),
            ("blk.3.ffn_down.weight", Q6_K, &[256, 600], ffn.clone()),
            ("output_norm.weight", F32, &[64], pattern(256, 2)),
        ],
    );
    (file, ffn)
}

#[test]
fn a_gguf_shard_gives_typed_views_of_its_tensors() {
    let f = fixture(64 * MIB);
    let (file, ffn) = model();
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    let lease = f.manager.lease(&shard, LeasePolicy::default()).unwrap();
    assert_eq!(
        lease.tensor_names().unwrap(),
        [
            "token_embd.weight",
            "blk.3.ffn_down.weight",
            "output_norm.weight"
        ]
    );
    let all = lease.tensors().unwrap();
    let t = all.get("blk.3.ffn_down.weight").unwrap();
    assert_eq!(
        (t.name(), t.dtype(), t.shape()),
        ("blk.3.ffn_down.weight", "Q6_K", &[256u64, 600][..])
    );
    assert_eq!(t.element_type(), Dtype::Q6_K);
    assert_eq!(t.element_type().block_elements(), 256);
    assert_eq!(t.host_bytes().unwrap(), &ffn[..]);
    // The metadata, from the sealed header: architecture and vocabulary.
    let header = all.gguf().unwrap();
    assert_eq!(header.architecture(), Some("llama"));
    let tokens = header.tokens().unwrap();
    assert_eq!(
        (tokens.len(), tokens[9999].as_str()),
        (10_000, "token-9999")
    );
    let e = all.get("blk.4.ffn_down.weight").unwrap_err();
    assert!(matches!(e, VramError::UnknownTensor { .. }), "{e}");
}

/// A flipped byte inside a GGUF tensor: the next lease is refused, the
/// tensor named with the bytes inside it, in the error and the audit log.
#[test]
fn a_corrupt_gguf_tensor_is_named_in_the_refusal_and_the_audit_record() {
    let f = fixture(64 * MIB);
    let (file, ffn) = model();
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    drop(f.manager.lease(&shard, LeasePolicy::Full).unwrap());
    let start = file.windows(ffn.len()).position(|w| w == &ffn[..]).unwrap() as u64;
    f.device
        .flip_bits(f.last_buffer(), start + 100_000, 0x01)
        .unwrap();
    let e = f.manager.lease(&shard, LeasePolicy::Full).unwrap_err();
    let VramError::IntegrityViolation { tensors, .. } = &e else {
        panic!("{e}");
    };
    let named = tensors
        .iter()
        .find(|t| t.starts_with("blk.3.ffn_down.weight, bytes "))
        .unwrap_or_else(|| panic!("{tensors:?}"));
    assert!(named.ends_with(" of 126000"), "{named}");
    let range: Vec<u64> = named["blk.3.ffn_down.weight, bytes ".len()..]
        .split(" of")
        .next()
        .unwrap()
        .split("..")
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(range[0] <= 100_000 && 100_000 < range[1], "{named}");
    assert!(e.to_string().contains("blk.3.ffn_down.weight"), "{e}");
    let failed = f
        .audit_lines()
        .into_iter()
        .find(|l| l.contains("seal_verification_failed"))
        .unwrap();
    assert!(failed.contains("blk.3.ffn_down.weight, bytes "), "{failed}");
    let refused = f
        .audit_lines()
        .into_iter()
        .find(|l| l.contains("lease_refused"))
        .unwrap();
    assert!(refused.contains("blk.3.ffn_down.weight"), "{refused}");
}

/// A byte of the GGUF header (deep in the vocabulary, past the first
/// read) altered before the first lease: the header leaves are checked
/// before any of it is believed.
#[test]
fn an_altered_gguf_header_is_caught_before_it_is_parsed() {
    let f = fixture(64 * MIB);
    let (file, _) = model();
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    let at = file.windows(10).position(|w| w == b"token-9999").unwrap() as u64;
    assert!(at > 128 * 1024, "{at}");
    f.device.overwrite(f.last_buffer(), at, b"T").unwrap();
    let e = f
        .manager
        .lease(&shard, LeasePolicy::Sampled { leaves: 1 })
        .unwrap_err();
    let VramError::IntegrityViolation { corrupt, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(corrupt[0].leaf_index, at / (64 * 1024), "{e}");
    assert!(shard.is_compromised());
}

/// A hostile GGUF header (a tensor past the end of the file): the bytes
/// lease, the tensors do not, with the reason.
#[test]
fn a_hostile_gguf_header_gives_no_tensors() {
    let f = fixture(64 * MIB);
    let mut file = gguf(3, &[("t", F32, &[64], pattern(256, 3))]);
    file.truncate(file.len() - 32);
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    let lease = f.manager.lease(&shard, LeasePolicy::Full).unwrap();
    let e = lease.tensors().unwrap_err();
    assert!(matches!(e, VramError::NotSafetensors { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("not a valid GGUF header: tensor `t` ends at byte"),
        "{e}"
    );
}

/// A split GGUF model in a directory: both parts sealed as one model, a
/// tensor found by name in whichever part holds it.
#[test]
fn the_parts_of_a_split_gguf_model_are_one_model() {
    let f = fixture(64 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let embd = pattern(4 * 8 * 20, 4);
    let out = pattern(8 * 8 * 20, 5);
    std::fs::write(
        dir.path().join("m-00001-of-00002.gguf"),
        gguf(5, &[("token_embd.weight", Q4_1, &[256, 4], embd.clone())]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("m-00002-of-00002.gguf"),
        gguf(5, &[("output.weight", Q4_1, &[256, 8], out.clone())]),
    )
    .unwrap();
    let request = vram_residency::SnapshotRequest::new(
        dir.path(),
        vram_residency::ModelRef::new("test/split").unwrap(),
        0,
    );
    let model = f.manager.seal_model(&request).unwrap();
    assert_eq!(
        model.weight_files(),
        ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    );
    let lease = f.manager.lease_model(&model, LeasePolicy::Full).unwrap();
    let tensors = lease.tensors().unwrap();
    assert_eq!(
        tensors.get("output.weight").unwrap().host_bytes().unwrap(),
        &out[..]
    );
    assert_eq!(
        tensors
            .get("token_embd.weight")
            .unwrap()
            .host_bytes()
            .unwrap(),
        &embd[..]
    );
    assert_eq!(tensors.get("output.weight").unwrap().dtype(), "Q4_1");
    // A missing part: refused by name.
    std::fs::remove_file(dir.path().join("m-00002-of-00002.gguf")).unwrap();
    let e = f.manager.seal_model(&request).unwrap_err();
    assert!(
        e.to_string()
            .contains("part m-00002-of-00002.gguf is missing"),
        "{e}"
    );
}
