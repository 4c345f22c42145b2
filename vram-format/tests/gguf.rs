//! GGUF headers: files written by candle's GGUF writer (random weights,
//! several quantization types) read as candle reads them, and hostile
//! headers refused with a typed error, never a panic or a large allocation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use proptest::prelude::*;
use vram_format::{read_table, Dtype, Format, FormatError, GgufArray, GgufHeader, GgufValue};

/// A small llama-like GGUF file: metadata an engine reads, and tensors of
/// several ggml types with random weights.
fn model() -> Vec<u8> {
    let dev = Device::Cpu;
    let mut tensors = Vec::new();
    for (name, ty, shape) in [
        ("token_embd.weight", GgmlDType::Q4_1, (8usize, 256usize)),
        ("blk.0.attn_norm.weight", GgmlDType::F32, (1, 64)),
        ("blk.0.ffn_down.weight", GgmlDType::Q4_0, (4, 64)),
        ("blk.1.ffn_down.weight", GgmlDType::Q8_0, (2, 96)),
        ("blk.2.ffn_up.weight", GgmlDType::Q4K, (2, 256)),
        ("blk.3.ffn_down.weight", GgmlDType::Q6K, (3, 256)),
        ("output_norm.weight", GgmlDType::F16, (1, 10)),
    ] {
        let t = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        tensors.push((name, QTensor::quantize(&t, ty).unwrap()));
    }
    let tokens = gguf_file::Value::Array(
        ["<s>", "</s>", "hello", "world", "\u{0120}the"]
            .iter()
            .map(|t| gguf_file::Value::String((*t).into()))
            .collect(),
    );
    let merges = gguf_file::Value::Array(vec![gguf_file::Value::String("h e".into())]);
    let meta = [
        (
            "general.architecture",
            gguf_file::Value::String("llama".into()),
        ),
        ("llama.block_count", gguf_file::Value::U32(4)),
        ("llama.context_length", gguf_file::Value::U32(2048)),
        ("llama.rope.freq_base", gguf_file::Value::F32(10000.0)),
        ("tokenizer.ggml.tokens", tokens),
        ("tokenizer.ggml.merges", merges),
        ("tokenizer.ggml.bos_token_id", gguf_file::Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", gguf_file::Value::Bool(true)),
        (
            "tokenizer.chat_template",
            gguf_file::Value::String("{% for m in messages %}{{ m.content }}{% endfor %}".into()),
        ),
    ];
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta_refs, &t_refs).unwrap();
    out.into_inner()
}

#[test]
fn a_file_written_by_candle_reads_as_candle_reads_it() {
    let bytes = model();
    let len = bytes.len() as u64;
    let h = GgufHeader::parse(&bytes, Some(len)).unwrap();
    let content = gguf_file::Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(h.version, 2);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.table.format(), Format::Gguf);
    assert_eq!(h.data_start(), content.tensor_data_offset);
    assert_eq!(h.table.tensors().len(), content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let t = h.table.get(name).unwrap();
        assert_eq!(
            t.dtype.name().replace('_', ""),
            format!("{:?}", info.ggml_dtype).replace('_', ""),
            "{name}"
        );
        // ggml's order is innermost first; candle's shape outermost first.
        let mut dims: Vec<u64> = info.shape.dims().iter().map(|&d| d as u64).collect();
        dims.reverse();
        assert_eq!(t.shape, dims, "{name}");
        assert_eq!(t.data.start, content.tensor_data_offset + info.offset);
        let q = info
            .read(
                &mut std::io::Cursor::new(&bytes),
                content.tensor_data_offset,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(t.len(), q.storage_size_in_bytes() as u64, "{name}");
    }
    let ffn = h.table.get("blk.3.ffn_down.weight").unwrap();
    assert_eq!(
        (ffn.dtype, ffn.shape.as_slice()),
        (Dtype::Q6_K, &[256u64, 3][..])
    );
    assert_eq!(h.table.get("token_embd.weight").unwrap().dtype, Dtype::Q4_1);
    // The metadata an engine reads.
    assert_eq!(h.metadata.len(), content.metadata.len());
    assert_eq!(h.architecture(), Some("llama"));
    assert_eq!(h.hyperparameter("block_count"), Some(4));
    assert_eq!(h.hyperparameter("context_length"), Some(2048));
    assert_eq!(
        h.get("llama.rope.freq_base"),
        Some(&GgufValue::F32(10000.0))
    );
    assert_eq!(h.tokens().unwrap()[4], "\u{0120}the");
    assert_eq!(h.merges().unwrap(), ["h e"]);
    assert_eq!(h.special_token("bos"), Some(0));
    assert_eq!(
        h.get("tokenizer.ggml.add_bos_token"),
        Some(&GgufValue::Bool(true))
    );
    assert!(h.chat_template().unwrap().contains("messages"));
    assert_eq!(h.split(), None);
    #[cfg(feature = "candle")]
    {
        let c = GgufHeader::candle_content(&bytes, len).unwrap();
        assert_eq!(c.tensor_data_offset, h.data_start());
        assert_eq!(c.tensor_infos.len(), h.table.tensors().len());
        // A hostile header never reaches candle's reader.
        let mut bad = bytes.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            GgufHeader::candle_content(&bad, len),
            Err(FormatError::Gguf { .. })
        ));
    }
    // Through the format-blind reader, in bounded reads.
    let mut reads = Vec::new();
    let table = read_table(len, |n| {
        reads.push(n);
        Ok::<_, FormatError>(bytes[..(n as usize).min(bytes.len())].to_vec())
    })
    .unwrap();
    assert_eq!(table, h.table);
    assert!(reads.iter().all(|&n| n <= len), "{reads:?}");
}

#[test]
fn a_header_read_in_small_steps_asks_for_what_it_needs() {
    let bytes = model();
    let len = bytes.len() as u64;
    let mut reads = Vec::new();
    let h = GgufHeader::read_with(len, 16, |n| {
        reads.push(n);
        Ok::<_, FormatError>(bytes[..(n as usize).min(bytes.len())].to_vec())
    })
    .unwrap();
    assert_eq!(h, GgufHeader::parse(&bytes, Some(len)).unwrap());
    assert!(reads.len() > 1 && reads.len() < 20, "{reads:?}");
    assert!(reads.windows(2).all(|w| w[0] < w[1]), "{reads:?}");
    // Doubling: the largest read is under twice the header.
    assert!(*reads.last().unwrap() < 2 * h.data_start(), "{reads:?}");
    // Every cut of the header is "read more", never a verdict.
    #[allow(clippy::panic)]
    for cut in 0..h.data_start() as usize {
        match GgufHeader::parse(&bytes[..cut], Some(len)) {
            Err(FormatError::GgufTruncated { needed, given }) => {
                assert!(needed > given && given == cut as u64, "{cut}: {needed}")
            }
            // The padding after the header is not read.
            Ok(cut_h) => assert!(cut as u64 + 32 > h.data_start() && cut_h == h, "{cut}"),
            Err(e) => panic!("cut at {cut}: {e}"),
        }
    }
}

/// A header writer for hostile cases.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn gguf(version: u32, tensors: u64, kvs: u64) -> Self {
        let mut r = Self(b"GGUF".to_vec());
        r.u32(version).u64(tensors).u64(kvs);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `data` bytes.
    fn data(&mut self, data: usize) -> Vec<u8> {
        let mut out = self.0.clone();
        out.resize(out.len().div_ceil(32) * 32 + data, 0x5a);
        out
    }
}

fn refused(bytes: &[u8], needle: &str) {
    let e = GgufHeader::parse(bytes, Some(bytes.len() as u64)).unwrap_err();
    assert!(matches!(e, FormatError::Gguf { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(needle), "{text} lacks {needle}");
    assert!(!text.contains('\u{1b}'), "{text}");
}

#[test]
fn hostile_headers_are_refused_with_a_reason() {
    refused(b"GGUX\x03\0\0\0", "magic");
    refused(&Raw::gguf(1, 0, 0).data(0), "version 1");
    refused(&Raw::gguf(0x0300_0000, 0, 0).data(0), "version 50331648");
    // Counts no file could hold: refused before anything is allocated.
    refused(
        &Raw::gguf(3, u64::MAX, 0).data(0),
        "claims 18446744073709551615 entries",
    );
    refused(&Raw::gguf(3, 0, u64::MAX / 2).data(0), "more than the");
    // An array of 2^60 strings, a string of 2^62 bytes.
    let mut r = Raw::gguf(3, 0, 1);
    r.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1 << 60);
    refused(&r.data(64), "claims 1152921504606846976 entries");
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k").u32(8).u64(1 << 62);
    refused(&r.data(64), "over the 100000000-byte limit");
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k").u32(8).u64(1000);
    refused(&r.data(10), "runs past the end of the file");
    // Unknown value type, arrays nested too deep, a bool of 2.
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k\u{1b}[31m").u32(13);
    refused(&r.data(8), "unknown value type 13");
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k").u32(9).u32(9).u64(1).u32(9).u64(1).u32(0).u64(0);
    refused(&r.data(8), "nests arrays deeper than 2");
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k").u32(7);
    r.0.push(2);
    refused(&r.data(0), "bool of value 2");
    let mut r = Raw::gguf(3, 0, 2);
    r.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    refused(&r.data(0), "`k` is given twice");
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k").u32(8).u64(2);
    r.0.extend_from_slice(&[0xff, 0xfe]);
    refused(&r.data(0), "not UTF-8");
    // Alignment: absent is 32; zero, three or the wrong type refused.
    for (ty, v) in [(4u32, 0u32), (4, 3), (5, 32)] {
        let mut r = Raw::gguf(3, 0, 1);
        r.str("general.alignment").u32(ty).u32(v);
        refused(&r.data(0), "general.alignment");
    }
    // Tensors: too many dimensions, unknown type, name too long, twice,
    // misaligned, overlapping, a gap, past the end, bytes after the end,
    // a shape that is not whole blocks, a shape that overflows.
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0);
    refused(&r.data(4), "5 dimensions");
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[4], 4, 0);
    refused(&r.data(32), "unknown ggml type 4");
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor(&"n".repeat(64), &[4], 0, 0);
    refused(&r.data(32), "over the 63-byte limit");
    let mut r = Raw::gguf(3, 2, 0);
    r.tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32);
    refused(&r.data(64), "`t` is given twice");
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[8], 0, 16);
    refused(&r.data(64), "not a multiple of the alignment 32");
    let mut r = Raw::gguf(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32);
    refused(
        &r.data(96),
        "`b` overlaps the bytes before it (data offset 32, expected 64)",
    );
    let mut r = Raw::gguf(3, 2, 0);
    r.tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 64);
    refused(
        &r.data(96),
        "`b` leaves a gap after the bytes before it (data offset 64, expected 32)",
    );
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[8], 0, 0);
    refused(&r.data(31), "past the end of the file");
    refused(&r.data(64), "32 bytes after its last tensor");
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[33, 1], 2, 0);
    refused(&r.data(64), "not a whole number of Q4_0 blocks");
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[u64::MAX, u64::MAX], 0, 0);
    refused(&r.data(64), "not a whole number of F32 blocks");
    let mut r = Raw::gguf(3, 1, 0);
    r.tensor("t", &[8], 0, u64::MAX - 31);
    refused(&r.data(64), "");
    // And a well-formed file of two tensors with padding between them.
    let mut r = Raw::gguf(3, 2, 0);
    r.tensor("a", &[3], 0, 0).tensor("b", &[32], 2, 32);
    let ok = r.data(32 + 18);
    let h = GgufHeader::parse(&ok, Some(ok.len() as u64)).unwrap();
    let b = h.table.get("b").unwrap();
    assert_eq!((b.dtype, b.len()), (Dtype::Q4_0, 18));
    assert_eq!(h.version, 3);
    // A u8 array is stored without a tag per element.
    let mut r = Raw::gguf(3, 0, 1);
    r.str("k").u32(9).u32(0).u64(3);
    r.0.extend_from_slice(&[1, 2, 3]);
    let ok = r.data(0);
    let h = GgufHeader::parse(&ok, Some(ok.len() as u64)).unwrap();
    assert_eq!(
        h.get("k").unwrap().as_array(),
        Some(&GgufArray::U8(vec![1, 2, 3]))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes after a valid start: a verdict, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512),
                                   version in 2u32..4, counts in (0u64..4, 0u64..4),
                                   file_len in proptest::option::of(0u64..2048)) {
        let mut r = Raw::gguf(version, counts.0, counts.1);
        r.0.extend_from_slice(&tail);
        let _ = GgufHeader::parse(&r.0, file_len);
        let _ = GgufHeader::parse(&r.0, Some(r.0.len() as u64));
    }

    /// A real file with one byte of its header changed: a verdict, never a
    /// panic; what is accepted stays inside the file.
    #[test]
    fn a_flipped_header_byte_never_panics(at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = model();
        let h = GgufHeader::parse(&bytes, Some(bytes.len() as u64)).unwrap();
        let i = at.index(h.data_start() as usize);
        bytes[i] = value;
        let len = bytes.len() as u64;
        if let Ok(h) = GgufHeader::parse(&bytes, Some(len)) {
            prop_assert!(h.table.tensors().iter().all(|t| t.data.start <= t.data.end && t.data.end <= len));
        }
    }
}
