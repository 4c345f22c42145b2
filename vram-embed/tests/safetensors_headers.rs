//! Hostile safetensors files are refused with a clear error before their
//! data is read or allocated: the reader is never asked for a byte past
//! the header.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::io::Read;
use vram_residency::{SealRequest, SealSource};

use proptest::prelude::*;
use vram_embed::{EmbedError, SafetensorsFile, TensorSource, MAX_HEADER_BYTES};

/// A reader over `bytes` that records how far it was read.
struct Counting<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.bytes.len() - self.pos);
        out[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data_len, 0x3f);
    out
}

/// Parses `bytes`, expects a refusal containing `needle`, and checks that
/// nothing past `8 + header_len` was read.
fn refused(bytes: &[u8], total_len: u64, needle: &str) {
    let header_end = bytes.get(..8).map_or(bytes.len(), |p| {
        8usize.saturating_add(u64::from_le_bytes(p.try_into().unwrap()) as usize)
    });
    let mut reader = Counting { bytes, pos: 0 };
    let e =
        SafetensorsFile::from_reader(&mut reader, total_len, "hostile.safetensors").unwrap_err();
    assert!(matches!(e, EmbedError::Safetensors { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(needle), "`{msg}` lacks `{needle}`");
    assert!(
        msg.starts_with("safetensors hostile.safetensors: "),
        "{msg}"
    );
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(
        reader.pos <= header_end.min(bytes.len()),
        "read {} bytes of a header ending at {header_end}: `{msg}`",
        reader.pos
    );
}

#[test]
fn a_valid_file_is_read_and_served() {
    let bytes = file(
        r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
        12,
    );
    let f = SafetensorsFile::from_reader(bytes.as_slice(), bytes.len() as u64, "ok").unwrap();
    assert_eq!(f.len(), bytes.len() as u64);
    let mut names: Vec<_> = f.names().collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"]);
    let b = f.tensor("b").unwrap();
    assert_eq!(b.shape(), [2]);
    assert_eq!(b.host_bytes().unwrap().len(), 8);
    assert_eq!(
        format!("{b:?}"),
        "TensorView { dtype: F32, shape: [2], len: 8 }"
    );
    let e = f.tensor("c").unwrap_err();
    assert_eq!(e.to_string(), "tensor `c` is missing from the weights");
    // An empty table is a valid (useless) file.
    let empty = file("{}", 0);
    let f = SafetensorsFile::from_reader(empty.as_slice(), empty.len() as u64, "empty").unwrap();
    assert_eq!(f.names().count(), 0);
}

#[test]
fn overlapping_ranges_are_refused() {
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        12,
    );
    refused(&bytes, bytes.len() as u64, "tensor `b` overlaps");
    // A gap between tensors is refused as well.
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#,
        16,
    );
    refused(&bytes, bytes.len() as u64, "tensor `b` leaves a gap");
    // Reversed offsets.
    let bytes = file(
        r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#,
        4,
    );
    refused(&bytes, bytes.len() as u64, "end before they begin");
}

#[test]
fn out_of_bounds_offsets_are_refused_before_allocation() {
    // A 1 TiB tensor in a file of a few bytes: consistent with its shape,
    // not with the file. Refused without reading or allocating the data.
    let bytes = file(
        r#"{"huge":{"dtype":"F32","shape":[274877906944],"data_offsets":[0,1099511627776]}}"#,
        16,
    );
    refused(
        &bytes,
        bytes.len() as u64,
        "ends at data offset 1099511627776, past the 16 data bytes of the file",
    );
    // Data past the last tensor (trailing bytes) too.
    let bytes = file(
        r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
        5,
    );
    refused(
        &bytes,
        bytes.len() as u64,
        "the tensors cover 4 data bytes, the file has 5",
    );
    // Sizes that overflow.
    let bytes = file(
        r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
        8,
    );
    refused(&bytes, bytes.len() as u64, "does not fill its 8 bytes");
    // Offsets that disagree with dtype times shape.
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        8,
    );
    refused(&bytes, bytes.len() as u64, "does not fill its 8 bytes");
}

#[test]
fn huge_or_lying_header_lengths_are_refused() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    refused(&bytes, bytes.len() as u64, "over the 100000000-byte limit");
    let mut bytes = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    refused(&bytes, u64::MAX, "over the 100000000-byte limit");
    // Under the cap but longer than the file.
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    refused(
        &bytes,
        bytes.len() as u64,
        "a header of 1000 bytes does not fit in a file of 10 bytes",
    );
    // Longer than what the reader yields.
    refused(&bytes, 5000, "cut short");
    refused(&[1, 2, 3], 3, "reading the 8-byte header length");
}

#[test]
fn bad_dtypes_and_bad_json_are_refused() {
    let bytes = file(
        r#"{"a":{"dtype":"X99","shape":[1],"data_offsets":[0,1]}}"#,
        1,
    );
    refused(&bytes, bytes.len() as u64, "unknown dtype `X99`");
    for (header, needle) in [
        ("[1,2]", "not a JSON object"),
        ("{", "not a JSON object"),
        (r#"{"a":7}"#, "is not an object"),
        (
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            "no shape of integers",
        ),
        ("\u{ff}\u{fe}", "not a JSON object"),
    ] {
        let bytes = file(header, 4);
        refused(&bytes, bytes.len() as u64, needle);
    }
    // A hostile name comes back escaped, not as terminal control codes.
    let bytes = file(
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\\u001b]0;x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
        4,
    );
    refused(&bytes, bytes.len() as u64, r"tensor `b\u{1b}]0;x` overlaps");
}

#[test]
fn a_file_that_changes_while_read_is_refused() {
    let bytes = file(
        r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
        4,
    );
    let len = bytes.len() as u64;
    // Grew: more bytes than its length said.
    let mut longer = bytes.clone();
    longer.push(0);
    let e = SafetensorsFile::from_reader(longer.as_slice(), len, "f").unwrap_err();
    assert!(e.to_string().contains("changed while it was read"), "{e}");
    // Shrank.
    let e = SafetensorsFile::from_reader(&bytes[..bytes.len() - 1], len, "f").unwrap_err();
    assert!(e.to_string().contains("changed while it was read"), "{e}");
}

#[test]
fn reading_from_a_path_checks_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    std::fs::write(
        &p,
        file(
            r#"{"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}}"#,
            4,
        ),
    )
    .unwrap();
    let e = SafetensorsFile::read(&p).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.safetensors: tensor `a` ends at data offset 9, past the 4 data bytes"),
        "{e}"
    );
    let e = SafetensorsFile::read(&dir.path().join("absent")).unwrap_err();
    assert!(
        matches!(
            e,
            EmbedError::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{e:?}"
    );
}

/// Hostile files (and a few good ones) through every reader of the
/// workspace: vram-hub's parser (from bytes and from a reader), a lease's
/// tensor table on sealed memory, and vram-embed's host file. Each gets one
/// verdict everywhere: the format's rules, applied by one parser.
#[test]
fn every_reader_gives_the_same_verdict() {
    fn tensor(name: &str, dtype: &str, shape: &[u64], at: [u64; 2]) -> String {
        format!(
            r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{},{}]}}"#,
            at[0], at[1]
        )
    }
    let two = |a: String, b: String| format!("{{{a},{b}}}");
    let padded = |len: usize| {
        let mut h = String::from("{}");
        h.extend(std::iter::repeat_n(' ', len - 2));
        h
    };
    let limit = MAX_HEADER_BYTES as usize;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "two tensors back to back",
            file(
                &two(
                    tensor("a", "F32", &[2], [0, 8]),
                    tensor("b", "U8", &[4], [8, 12]),
                ),
                12,
            ),
            true,
        ),
        (
            "a name given twice",
            file(
                &two(
                    tensor("a", "F32", &[2], [0, 8]),
                    tensor("a", "F32", &[2], [8, 16]),
                ),
                16,
            ),
            false,
        ),
        (
            "a gap between tensors",
            file(
                &two(
                    tensor("a", "F32", &[2], [0, 8]),
                    tensor("b", "F32", &[2], [12, 20]),
                ),
                20,
            ),
            false,
        ),
        (
            "a gap before the first tensor",
            file(&format!("{{{}}}", tensor("a", "F32", &[2], [4, 12])), 12),
            false,
        ),
        (
            "overlapping tensors",
            file(
                &two(
                    tensor("a", "F32", &[2], [0, 8]),
                    tensor("b", "F32", &[2], [4, 12]),
                ),
                12,
            ),
            false,
        ),
        (
            "a bad dtype",
            file(&format!("{{{}}}", tensor("a", "Q4", &[8], [0, 8])), 8),
            false,
        ),
        (
            "half a byte of F4",
            file(&format!("{{{}}}", tensor("a", "F4", &[3], [0, 2])), 2),
            false,
        ),
        (
            "offsets past the end",
            file(&format!("{{{}}}", tensor("a", "F32", &[4], [0, 16])), 8),
            false,
        ),
        (
            "bytes after the last tensor",
            file(&format!("{{{}}}", tensor("a", "F32", &[2], [0, 8])), 12),
            false,
        ),
        ("a header of the limit", file(&padded(limit), 0), true),
        (
            "a header one over the limit",
            file(&padded(limit + 1), 0),
            false,
        ),
        (
            "a header one under the limit",
            file(&padded(limit - 1), 0),
            true,
        ),
    ];

    let device = vram_mock::MockDevice::new(0, 512 << 20);
    let dynamic: std::sync::Arc<dyn vram_residency::Device> = device;
    let secret =
        vram_residency::WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![5u8; 32])).unwrap();
    let manager = vram_residency::VramManager::new(
        vram_residency::VramConfig::builder(secret)
            .device(dynamic)
            .leaf_size(vram_residency::LeafSize::new(1 << 20).unwrap())
            .build(),
    )
    .unwrap();
    for (what, bytes, good) in cases {
        let len = bytes.len() as u64;
        let hub = vram_format::SafetensorsHeader::parse(&bytes, Some(len)).map(|h| h.tensors.len());
        let hub_reader =
            vram_format::SafetensorsHeader::read_from(&mut bytes.as_slice(), Some(len))
                .map(|h| h.tensors.len());
        let embed =
            SafetensorsFile::from_reader(bytes.as_slice(), len, "f").map(|f| f.names().count());
        let shard = manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes))
            .unwrap();
        let lease = manager
            .lease(&shard, vram_residency::LeasePolicy::Full)
            .unwrap();
        let leased = lease.tensors().map(|t| t.names().count());
        let verdicts = [
            hub.is_ok(),
            hub_reader.is_ok(),
            leased.is_ok(),
            embed.is_ok(),
        ];
        assert_eq!(
            verdicts, [good; 4],
            "{what}: hub {hub:?}, hub reader {hub_reader:?}, lease {leased:?}, embed {embed:?}"
        );
        if good {
            let n = hub.unwrap();
            assert_eq!(
                (hub_reader.unwrap(), leased.unwrap(), embed.unwrap()),
                (n, n, n),
                "{what}"
            );
        }
        drop(lease);
        shard.release().unwrap();
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                   extra in 0u64..64) {
        let total = bytes.len() as u64 + extra;
        if let Ok(f) = SafetensorsFile::from_reader(bytes.as_slice(), total, "p") {
            for name in f.names().map(str::to_owned).collect::<Vec<_>>() {
                let _ = f.tensor(&name);
            }
        }
    }

    #[test]
    fn arbitrary_offsets_never_panic(begin in any::<u64>(), end in any::<u64>(),
                                     dim in any::<u64>(), data in 0usize..64) {
        let header = format!(r#"{{"t":{{"dtype":"U8","shape":[{dim}],"data_offsets":[{begin},{end}]}}}}"#);
        let bytes = file(&header, data);
        if let Ok(f) = SafetensorsFile::from_reader(bytes.as_slice(), bytes.len() as u64, "p") {
            let t = f.tensor("t").unwrap();
            prop_assert_eq!(t.host_bytes().unwrap().len() as u64, dim);
        }
    }
}
