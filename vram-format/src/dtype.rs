//! The element types of both formats, with their storage sizes.
//!
//! One enum for safetensors dtypes and ggml types: a type both formats
//! define (`F32`, `F16`, `BF16`, the integers, `F64`) is one variant, named
//! as safetensors names it; the quantized ggml types are stored in blocks of
//! several elements (`Q4_1`: 32 elements in 20 bytes).

use std::fmt;

/// An element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types, missing_docs)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8_E4M3,
    F8_E5M2,
    F8_E8M0,
    F8_E4M3FNUZ,
    F8_E5M2FNUZ,
    F4,
    F6_E2M3,
    F6_E3M2,
    U16,
    I16,
    F16,
    BF16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
    C64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    IQ1_M,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// One row: the type, its name, its ggml id (if ggml defines it), whether
/// safetensors defines it, elements per block, bits per block.
struct Row(Dtype, &'static str, Option<u32>, bool, u64, u64);

/// Sizes from the formats' definitions (safetensors' `Dtype::bitsize`,
/// ggml's `type_traits`: `blck_size` and `type_size`).
const TABLE: &[Row] = &[
    Row(Dtype::Bool, "BOOL", None, true, 1, 8),
    Row(Dtype::U8, "U8", None, true, 1, 8),
    Row(Dtype::I8, "I8", Some(24), true, 1, 8),
    Row(Dtype::F8_E4M3, "F8_E4M3", None, true, 1, 8),
    Row(Dtype::F8_E5M2, "F8_E5M2", None, true, 1, 8),
    Row(Dtype::F8_E8M0, "F8_E8M0", None, true, 1, 8),
    Row(Dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", None, true, 1, 8),
    Row(Dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", None, true, 1, 8),
    Row(Dtype::F4, "F4", None, true, 1, 4),
    Row(Dtype::F6_E2M3, "F6_E2M3", None, true, 1, 6),
    Row(Dtype::F6_E3M2, "F6_E3M2", None, true, 1, 6),
    Row(Dtype::U16, "U16", None, true, 1, 16),
    Row(Dtype::I16, "I16", Some(25), true, 1, 16),
    Row(Dtype::F16, "F16", Some(1), true, 1, 16),
    Row(Dtype::BF16, "BF16", Some(30), true, 1, 16),
    Row(Dtype::U32, "U32", None, true, 1, 32),
    Row(Dtype::I32, "I32", Some(26), true, 1, 32),
    Row(Dtype::F32, "F32", Some(0), true, 1, 32),
    Row(Dtype::U64, "U64", None, true, 1, 64),
    Row(Dtype::I64, "I64", Some(27), true, 1, 64),
    Row(Dtype::F64, "F64", Some(28), true, 1, 64),
    Row(Dtype::C64, "C64", None, true, 1, 64),
    Row(Dtype::Q4_0, "Q4_0", Some(2), false, 32, 18 * 8),
    Row(Dtype::Q4_1, "Q4_1", Some(3), false, 32, 20 * 8),
    Row(Dtype::Q5_0, "Q5_0", Some(6), false, 32, 22 * 8),
    Row(Dtype::Q5_1, "Q5_1", Some(7), false, 32, 24 * 8),
    Row(Dtype::Q8_0, "Q8_0", Some(8), false, 32, 34 * 8),
    Row(Dtype::Q8_1, "Q8_1", Some(9), false, 32, 36 * 8),
    Row(Dtype::Q2_K, "Q2_K", Some(10), false, 256, 84 * 8),
    Row(Dtype::Q3_K, "Q3_K", Some(11), false, 256, 110 * 8),
    Row(Dtype::Q4_K, "Q4_K", Some(12), false, 256, 144 * 8),
    Row(Dtype::Q5_K, "Q5_K", Some(13), false, 256, 176 * 8),
    Row(Dtype::Q6_K, "Q6_K", Some(14), false, 256, 210 * 8),
    Row(Dtype::Q8_K, "Q8_K", Some(15), false, 256, 292 * 8),
    Row(Dtype::IQ2_XXS, "IQ2_XXS", Some(16), false, 256, 66 * 8),
    Row(Dtype::IQ2_XS, "IQ2_XS", Some(17), false, 256, 74 * 8),
    Row(Dtype::IQ3_XXS, "IQ3_XXS", Some(18), false, 256, 98 * 8),
    Row(Dtype::IQ1_S, "IQ1_S", Some(19), false, 256, 50 * 8),
    Row(Dtype::IQ4_NL, "IQ4_NL", Some(20), false, 32, 18 * 8),
    Row(Dtype::IQ3_S, "IQ3_S", Some(21), false, 256, 110 * 8),
    Row(Dtype::IQ2_S, "IQ2_S", Some(22), false, 256, 82 * 8),
    Row(Dtype::IQ4_XS, "IQ4_XS", Some(23), false, 256, 136 * 8),
    Row(Dtype::IQ1_M, "IQ1_M", Some(29), false, 256, 56 * 8),
    Row(Dtype::TQ1_0, "TQ1_0", Some(34), false, 256, 54 * 8),
    Row(Dtype::TQ2_0, "TQ2_0", Some(35), false, 256, 66 * 8),
    Row(Dtype::MXFP4, "MXFP4", Some(39), false, 32, 17 * 8),
];

impl Dtype {
    fn row(self) -> &'static Row {
        // Every variant has a row (tested); the fallback is never taken.
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .unwrap_or(&Row(Dtype::U8, "U8", None, true, 1, 8))
    }

    /// The name: safetensors' for the types it defines (`F32`, `BF16`),
    /// ggml's for the others (`Q4_1`, `Q6_K`).
    #[must_use]
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The safetensors dtype of that name, `None` for a name the format
    /// does not define.
    #[must_use]
    pub fn from_safetensors(name: &str) -> Option<Self> {
        TABLE.iter().find(|r| r.3 && r.1 == name).map(|r| r.0)
    }

    /// The ggml type of that id (`ggml_type`), `None` for one this crate
    /// does not know (or that ggml retired).
    #[must_use]
    pub fn from_ggml(id: u32) -> Option<Self> {
        TABLE.iter().find(|r| r.2 == Some(id)).map(|r| r.0)
    }

    /// Its ggml id, `None` for a type ggml does not define.
    #[must_use]
    pub fn ggml_id(self) -> Option<u32> {
        self.row().2
    }

    /// Elements per storage block: 1 for plain types, 32 or 256 for
    /// quantized ones.
    #[must_use]
    pub fn block_elements(self) -> u64 {
        self.row().4
    }

    /// Bits per storage block (bits per element for plain types).
    #[must_use]
    pub fn block_bits(self) -> u64 {
        self.row().5
    }

    /// Bytes that `elements` elements take, `None` when they are not a
    /// whole number of blocks in whole bytes, or overflow.
    #[must_use]
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let per = self.block_elements();
        if elements.checked_rem(per)? != 0 {
            return None;
        }
        let bits = elements.checked_div(per)?.checked_mul(self.block_bits())?;
        if bits.checked_rem(8)? != 0 {
            return None;
        }
        bits.checked_div(8)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Dtype {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_its_own_and_names_round_trip() {
        for r in TABLE {
            assert_eq!(r.0.row().1, r.1);
            if r.3 {
                assert_eq!(Dtype::from_safetensors(r.1), Some(r.0));
            } else {
                assert_eq!(Dtype::from_safetensors(r.1), None);
            }
            if let Some(id) = r.2 {
                assert_eq!(Dtype::from_ggml(id), Some(r.0));
                assert_eq!(r.0.ggml_id(), Some(id));
            }
        }
        assert_eq!(Dtype::from_safetensors("Q4"), None);
        assert_eq!(Dtype::from_ggml(4), None, "ggml's retired Q4_2");
        assert_eq!(Dtype::from_ggml(u32::MAX), None);
    }

    #[test]
    fn sizes_count_whole_blocks_and_bytes() {
        assert_eq!(Dtype::F32.bytes_for(3), Some(12));
        assert_eq!(Dtype::F4.bytes_for(3), None);
        assert_eq!(Dtype::F4.bytes_for(4), Some(2));
        assert_eq!(Dtype::Q4_1.bytes_for(64), Some(40));
        assert_eq!(Dtype::Q4_1.bytes_for(33), None);
        assert_eq!(Dtype::Q6_K.bytes_for(512), Some(420));
        assert_eq!(Dtype::F64.bytes_for(u64::MAX), None);
    }
}
