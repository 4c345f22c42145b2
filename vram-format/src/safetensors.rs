//! The header of a safetensors file, read defensively: which tensor lies in
//! which bytes, so that a corrupt byte range can be named by its tensors and
//! a tensor's bytes handed out without reading outside it.
//!
//! Layout: an 8-byte little-endian header length `N`, then `N` bytes of JSON
//! (an object mapping each tensor name to `{"dtype", "shape", "data_offsets":
//! [begin, end]}`, offsets relative to the first byte after the header, plus
//! an optional `"__metadata__"` object of strings), then the tensor data.
//!
//! This is the workspace's one parser of the format (the facade's leases and
//! vram-embed's host files take their tensor tables from it), with the
//! format's own rules, as the reference implementation (the `safetensors`
//! crate) applies them: a header of at most [`MAX_HEADER_BYTES`], no name
//! twice, a dtype the format defines, a shape that accounts for exactly its
//! bytes (whole bytes), and data offsets that, in order, start at 0, leave
//! no gap, do not overlap and end exactly at the end of the file. The header
//! is untrusted: nothing is allocated from it before its length is checked,
//! and no input makes the parser panic.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use vram_validation::escape_for_log;

use crate::error::safetensors as invalid;
use crate::{Dtype, Format, FormatError, TensorInfo, TensorTable};

/// Largest header accepted: 100,000,000 bytes, the reference
/// implementation's limit (`safetensors::tensor::MAX_HEADER_SIZE`).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes before the JSON: its length, `u64` little-endian.
const LEN_PREFIX: u64 = 8;

/// The parsed header of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsHeader {
    /// Every tensor, ordered by where its data begins.
    pub tensors: Vec<TensorInfo>,
    /// Offset of the first data byte: 8 plus the header length.
    pub data_start: u64,
}

/// Element size in bits of a dtype the safetensors format defines; `None`
/// for any other name.
#[must_use]
pub fn dtype_bits(dtype: &str) -> Option<u64> {
    Dtype::from_safetensors(dtype).map(Dtype::block_bits)
}

impl SafetensorsHeader {
    /// Where the data of a file of `file_len` bytes (when known) begins,
    /// from its first 8 bytes: 8 plus the header length, once that length
    /// is checked against [`MAX_HEADER_BYTES`] and the file. What a caller
    /// reads (and verifies) before [`Self::parse`].
    ///
    /// # Errors
    ///
    /// [`FormatError::Safetensors`] when the length is over the limit or does
    /// not fit in the file.
    pub fn data_start_from_prefix(
        prefix: [u8; 8],
        file_len: Option<u64>,
    ) -> Result<u64, FormatError> {
        check_len(u64::from_le_bytes(prefix), file_len).map(|len| LEN_PREFIX.saturating_add(len))
    }

    /// Parses the header at the start of `bytes` (the file's first bytes:
    /// at least the length prefix and the whole header). `file_len`, when
    /// known, is the file's length: the tensors' data must end exactly
    /// there.
    ///
    /// # Errors
    ///
    /// [`FormatError::Safetensors`] when `bytes` is too short, the header is
    /// longer than [`MAX_HEADER_BYTES`] or the file, is not a JSON object of
    /// tensor entries, names a tensor twice, or an entry's dtype, shape or
    /// offsets break the format's rules (see the module's documentation).
    pub fn parse(bytes: &[u8], file_len: Option<u64>) -> Result<Self, FormatError> {
        let (prefix, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| invalid("shorter than the 8-byte header length"))?;
        let len = check_len(u64::from_le_bytes(*prefix), file_len)?;
        let json = usize::try_from(len)
            .ok()
            .and_then(|n| rest.get(..n))
            .ok_or_else(|| invalid(format!("the header of {len} bytes is cut short")))?;
        Self::from_json(json, len, file_len)
    }

    /// Reads and parses the header from the start of `reader`; reads no
    /// more than the header (at most 8 + [`MAX_HEADER_BYTES`] bytes).
    ///
    /// # Errors
    ///
    /// As [`Self::parse`]; [`FormatError::Safetensors`] also when reading fails.
    pub fn read_from(reader: &mut impl Read, file_len: Option<u64>) -> Result<Self, FormatError> {
        let mut prefix = [0u8; 8];
        reader
            .read_exact(&mut prefix)
            .map_err(|e| invalid(format!("reading the header length: {}", e.kind())))?;
        let len = check_len(u64::from_le_bytes(prefix), file_len)?;
        // Grows as bytes arrive: a lying length costs nothing up front.
        let mut json = Vec::new();
        reader
            .take(len)
            .read_to_end(&mut json)
            .map_err(|e| invalid(format!("reading the header: {}", e.kind())))?;
        if u64::try_from(json.len()).ok() != Some(len) {
            return Err(invalid(format!("the header of {len} bytes is cut short")));
        }
        Self::from_json(&json, len, file_len)
    }

    fn from_json(json: &[u8], len: u64, file_len: Option<u64>) -> Result<Self, FormatError> {
        let data_start = LEN_PREFIX.saturating_add(len);
        // serde_json limits nesting (128 levels), so hostile depth cannot
        // exhaust the stack. Entries are kept in order, twins included, so
        // that a name given twice is refused rather than one of them kept.
        let Entries(entries) = serde_json::from_slice(json).map_err(|e| {
            invalid(format!(
                "the header is not a JSON object ({})",
                escape_for_log(&e.to_string(), 200)
            ))
        })?;
        let data_len = file_len.map(|n| n.saturating_sub(data_start));
        let mut seen = HashSet::with_capacity(entries.len());
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            if !seen.insert(name.clone()) {
                return Err(invalid(format!(
                    "the header names `{}` twice",
                    escape_for_log(&name, 80)
                )));
            }
            if name == "__metadata__" {
                let strings = entry
                    .as_object()
                    .is_some_and(|m| m.values().all(Value::is_string));
                if !strings {
                    return Err(invalid("__metadata__ is not an object of strings"));
                }
                continue;
            }
            tensors.push(tensor(name, &entry, data_start, data_len)?);
        }
        tensors.sort_by_key(|t| (t.data.start, t.data.end));
        // In order, each tensor begins where the one before ended: no gap,
        // no overlap, and the first at the first data byte.
        let mut end = data_start;
        for t in &tensors {
            if t.data.start != end {
                let what = if t.data.start > end {
                    "leaves a gap after"
                } else {
                    "overlaps"
                };
                return Err(invalid(format!(
                    "tensor `{}` {what} the bytes before it (data offset {}, expected {})",
                    escape_for_log(&t.name, 80),
                    t.data.start.saturating_sub(data_start),
                    end.saturating_sub(data_start)
                )));
            }
            end = t.data.end;
        }
        if let Some(n) = file_len {
            if end != n {
                return Err(invalid(format!(
                    "the tensors cover {} data bytes, the file has {}",
                    end.saturating_sub(data_start),
                    n.saturating_sub(data_start)
                )));
            }
        }
        Ok(Self {
            tensors,
            data_start,
        })
    }

    /// The header's own bytes, length prefix included.
    #[must_use]
    pub fn header_range(&self) -> Range<u64> {
        0..self.data_start
    }

    /// The header as the workspace's one tensor table.
    #[must_use]
    pub fn into_table(self) -> TensorTable {
        TensorTable::new(Format::Safetensors, self.tensors, self.data_start)
    }

    /// The tensors whose data overlaps `range` (absolute file offsets,
    /// half-open), in file order.
    pub fn tensors_overlapping(&self, range: Range<u64>) -> impl Iterator<Item = &TensorInfo> {
        self.tensors
            .iter()
            .filter(move |t| t.data.start < range.end && range.start < t.data.end)
    }
}

/// A JSON object's entries in order, a name given twice kept twice.
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

fn check_len(len: u64, file_len: Option<u64>) -> Result<u64, FormatError> {
    if len > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "a header of {len} bytes is over the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    if let Some(n) = file_len {
        if LEN_PREFIX.saturating_add(len) > n {
            return Err(invalid(format!(
                "a header of {len} bytes does not fit in a file of {n} bytes"
            )));
        }
    }
    Ok(len)
}

fn tensor(
    name: String,
    entry: &Value,
    data_start: u64,
    data_len: Option<u64>,
) -> Result<TensorInfo, FormatError> {
    let shown = || escape_for_log(&name, 80);
    let obj = entry
        .as_object()
        .ok_or_else(|| invalid(format!("tensor `{}` is not an object", shown())))?;
    let dtype_name = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("tensor `{}` has no dtype string", shown())))?;
    let dtype = Dtype::from_safetensors(dtype_name).ok_or_else(|| {
        invalid(format!(
            "tensor `{}` has an unknown dtype `{}`",
            shown(),
            escape_for_log(dtype_name, 32)
        ))
    })?;
    let bits = dtype.block_bits();
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        .ok_or_else(|| invalid(format!("tensor `{}` has no shape of integers", shown())))?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .map(|o| o.iter().map(Value::as_u64).collect::<Vec<_>>());
    let (begin, end) = match offsets.as_deref() {
        Some([Some(b), Some(e)]) => (*b, *e),
        _ => {
            return Err(invalid(format!(
                "tensor `{}` has no data_offsets [begin, end]",
                shown()
            )))
        }
    };
    if begin > end {
        return Err(invalid(format!(
            "tensor `{}` has data_offsets [{begin}, {end}] that end before they begin",
            shown()
        )));
    }
    if let Some(limit) = data_len {
        if end > limit {
            return Err(invalid(format!(
                "tensor `{}` ends at data offset {end}, past the {limit} data bytes of the file",
                shown()
            )));
        }
    }
    // Its bytes are exactly its elements times the dtype's size, in whole
    // bytes (a 4-bit tensor of an odd element count is refused, as the
    // reference does).
    let len = end.saturating_sub(begin);
    let bit_len = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|elements| elements.checked_mul(bits));
    let byte_len = bit_len
        .filter(|b| b.checked_rem(8) == Some(0))
        .and_then(|b| b.checked_div(8));
    if byte_len != Some(len) {
        return Err(invalid(format!(
            "tensor `{}`: shape {shape:?} of {dtype} does not fill its {len} bytes",
            shown()
        )));
    }
    let abs = |o: u64| {
        data_start
            .checked_add(o)
            .ok_or_else(|| invalid(format!("tensor `{}` has an offset out of range", shown())))
    };
    Ok(TensorInfo {
        data: abs(begin)?..abs(end)?,
        name,
        dtype,
        shape,
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.resize(out.len() + data_len, 0xab);
        out
    }

    const TWO: &str = r#"{"__metadata__":{"format":"pt"},
        "b.weight":{"dtype":"F16","shape":[2,3],"data_offsets":[16,28]},
        "a.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;

    #[test]
    fn parses_tensors_in_file_order_with_absolute_offsets() {
        let bytes = file(TWO, 28);
        let h = SafetensorsHeader::parse(&bytes, Some(bytes.len() as u64)).unwrap();
        let start = 8 + TWO.len() as u64;
        assert_eq!(h.data_start, start);
        assert_eq!(h.header_range(), 0..start);
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.weight", "b.weight"]);
        assert_eq!(h.tensors[0].data, start..start + 16);
        assert_eq!(h.tensors[1].dtype, Dtype::F16);
        assert_eq!(h.tensors[1].shape, [2, 3]);
        // The same through a reader.
        let r = SafetensorsHeader::read_from(&mut bytes.as_slice(), None).unwrap();
        assert_eq!(r, h);
    }

    #[test]
    fn overlapping_tensors_are_the_ones_touching_the_range() {
        let bytes = file(TWO, 28);
        let h = SafetensorsHeader::parse(&bytes, None).unwrap();
        let s = h.data_start;
        let names = |r: Range<u64>| {
            h.tensors_overlapping(r)
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(s..s + 1), ["a.weight"]);
        assert_eq!(names(s + 15..s + 17), ["a.weight", "b.weight"]);
        assert_eq!(names(s + 16..s + 100), ["b.weight"]);
        // Half-open: a range ending where a tensor begins does not touch it.
        assert_eq!(names(0..s), Vec::<String>::new());
        assert_eq!(names(s + 28..s + 40), Vec::<String>::new());
    }

    #[test]
    fn hostile_headers_are_refused_not_panicked_on() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "shorter than"),
            (
                (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec(),
                "over the 100000000-byte limit",
            ),
            (u64::MAX.to_le_bytes().to_vec(), "over the"),
            (file("[1,2]", 0), "not a JSON object"),
            (file("{", 0), "not a JSON object"),
            (file(r#"{"t":7}"#, 0), "is not an object"),
            (
                file(
                    r#"{"t":{"dtype":"F16","shape":[1],"data_offsets":[4,2]}}"#,
                    8,
                ),
                "end before they begin",
            ),
            (
                file(
                    r#"{"t":{"dtype":"F16","shape":[1],"data_offsets":[0,9]}}"#,
                    8,
                ),
                "past the 8 data bytes",
            ),
            (
                file(r#"{"t":{"dtype":"F16","shape":[1],"data_offsets":[0]}}"#, 8),
                "no data_offsets",
            ),
            (
                file(
                    r#"{"t":{"dtype":"F16","shape":[-1],"data_offsets":[0,2]}}"#,
                    8,
                ),
                "no shape",
            ),
            (
                file(r#"{"t\u001b]0;x":{"shape":[1],"data_offsets":[0,2]}}"#, 8),
                r"t\u{1b}]0;x",
            ),
            // The format's rules: no name twice (the last one would win),
            // no gap, no overlap, no bytes after the last tensor, known
            // dtypes, whole bytes, metadata of strings.
            (
                file(
                    r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"t":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#,
                    4,
                ),
                "names `t` twice",
            ),
            (
                file(r#"{"__metadata__":{},"__metadata__":{}}"#, 0),
                "names `__metadata__` twice",
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#,
                    5,
                ),
                "tensor `b` leaves a gap after the bytes before it (data offset 3, expected 2)",
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
                    3,
                ),
                "tensor `a` leaves a gap",
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#,
                    4,
                ),
                "tensor `b` overlaps the bytes before it (data offset 2, expected 4)",
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#,
                    3,
                ),
                "the tensors cover 2 data bytes, the file has 3",
            ),
            (
                file(
                    r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}"#,
                    2,
                ),
                "unknown dtype `Q4`",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#,
                    2,
                ),
                "does not fill its 2 bytes",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "does not fill its 8 bytes",
            ),
            (
                file(r#"{"__metadata__":{"n":1}}"#, 0),
                "__metadata__ is not an object of strings",
            ),
        ];
        for (bytes, needle) in cases {
            let len = bytes.len() as u64;
            let e = SafetensorsHeader::parse(&bytes, Some(len)).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert!(!e.to_string().contains('\u{1b}'), "{e}");
        }
        // A length longer than the file.
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let e = SafetensorsHeader::parse(&bytes, Some(10)).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = SafetensorsHeader::parse(&bytes, None).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        let e = SafetensorsHeader::read_from(&mut bytes.as_slice(), None).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
    }

    /// The header limit is the reference's, 100,000,000 bytes: a header of
    /// that length is read, one byte more is refused.
    #[test]
    fn the_header_limit_is_one_hundred_million_bytes() {
        let limit = usize::try_from(MAX_HEADER_BYTES).unwrap();
        assert_eq!(limit, 100_000_000);
        let mut json = String::from("{}");
        json.extend(std::iter::repeat_n(' ', limit - 2));
        let bytes = file(&json, 0);
        let h = SafetensorsHeader::parse(&bytes, Some(bytes.len() as u64)).unwrap();
        assert_eq!(h.data_start, 8 + MAX_HEADER_BYTES);
        json.push(' ');
        let bytes = file(&json, 0);
        let e = SafetensorsHeader::parse(&bytes, Some(bytes.len() as u64)).unwrap_err();
        assert!(
            e.to_string()
                .contains("a header of 100000001 bytes is over the 100000000-byte limit"),
            "{e}"
        );
    }

    /// Tensors of no bytes may share an offset; zero-length tensors among
    /// others keep the data contiguous.
    #[test]
    fn empty_tensors_keep_the_data_contiguous() {
        let json = r#"{"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"y":{"dtype":"U8","shape":[0,4],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
        let bytes = file(json, 2);
        let h = SafetensorsHeader::parse(&bytes, Some(bytes.len() as u64)).unwrap();
        assert_eq!(h.tensors.len(), 3);
    }

    #[test]
    fn an_empty_header_object_has_no_tensors() {
        let bytes = file("{}  ", 0);
        let h = SafetensorsHeader::parse(&bytes, Some(bytes.len() as u64)).unwrap();
        assert!(h.tensors.is_empty());
        assert_eq!(h.data_start, 12);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                                           file_len in proptest::option::of(any::<u64>())) {
            let _ = SafetensorsHeader::parse(&bytes, file_len);
            let _ = SafetensorsHeader::read_from(&mut bytes.as_slice(), file_len);
        }

        #[test]
        fn never_panics_on_arbitrary_offsets(begin in any::<u64>(), end in any::<u64>(),
                                             data in 0usize..64,
                                             probe_start in any::<u64>(), probe_len in 0u64..1000) {
            let json = format!(r#"{{"t":{{"dtype":"U8","shape":[1],"data_offsets":[{begin},{end}]}}}}"#);
            let bytes = file(&json, data);
            for len in [None, Some(bytes.len() as u64)] {
                if let Ok(h) = SafetensorsHeader::parse(&bytes, len) {
                    prop_assert!(h.tensors.iter().all(|t| t.data.start <= t.data.end));
                    let _ = h.tensors_overlapping(probe_start..probe_start.saturating_add(probe_len)).count();
                }
            }
        }
    }
}
