//! Kernels over quantized blocks read in place from leased bytes: candle's
//! block types and dot products, over a view of the sealed memory instead of
//! a copy of it.

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2;
mod dot;
mod q4_1;
mod q8_0;
#[allow(unsafe_code)]
mod view;

use candle_core::quantized::k_quants::{
    self, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8_0, GgmlType,
};
use candle_core::quantized::GgmlDType;
use half::f16;

use crate::LlmError;

/// Runs `$body` with `$T` the block type of `$dtype`; an unsupported type is
/// an error naming it.
macro_rules! with_block_type {
    ($dtype:expr, $T:ident, $body:block) => {
        match $dtype {
            GgmlDType::F32 => {
                type $T = f32;
                $body
            }
            GgmlDType::F16 => {
                type $T = f16;
                $body
            }
            GgmlDType::Q4_0 => {
                type $T = BlockQ4_0;
                $body
            }
            GgmlDType::Q4_1 => {
                type $T = BlockQ4_1;
                $body
            }
            GgmlDType::Q5_0 => {
                type $T = BlockQ5_0;
                $body
            }
            GgmlDType::Q5_1 => {
                type $T = BlockQ5_1;
                $body
            }
            GgmlDType::Q8_0 => {
                type $T = BlockQ8_0;
                $body
            }
            GgmlDType::Q2K => {
                type $T = BlockQ2K;
                $body
            }
            GgmlDType::Q3K => {
                type $T = BlockQ3K;
                $body
            }
            GgmlDType::Q4K => {
                type $T = BlockQ4K;
                $body
            }
            GgmlDType::Q5K => {
                type $T = BlockQ5K;
                $body
            }
            GgmlDType::Q6K => {
                type $T = BlockQ6K;
                $body
            }
            other => Err(unsupported(other)),
        }
    };
}

/// The GGUF tensor types this engine computes on.
pub const SUPPORTED_TYPES: &[GgmlDType] = &[
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

fn unsupported(dtype: GgmlDType) -> LlmError {
    LlmError::Metadata(format!(
        "tensor type {dtype:?} is not supported by this engine (supported: {SUPPORTED_TYPES:?})"
    ))
}

fn compute(e: candle_core::Error) -> LlmError {
    LlmError::Compute(e.to_string())
}

fn mismatch(what: &str, got: usize, want: Option<usize>) -> LlmError {
    LlmError::Compute(format!(
        "quantized matmul: {what} has {got} elements, expected {}",
        want.map_or_else(
            || "a size that fits in memory".to_string(),
            |w| w.to_string()
        )
    ))
}

/// Blocks of `block`-wide rows of `k` values: `k / block`, when `k` is a
/// whole number of blocks.
fn blocks_per_row(k: usize, block: usize) -> Result<usize, LlmError> {
    if block == 0 || !k.is_multiple_of(block) {
        return Err(LlmError::Compute(format!(
            "a row of {k} values is not a whole number of {block}-value blocks"
        )));
    }
    Ok(k.checked_div(block).unwrap_or(0))
}

/// `dst (m×n) = lhs (m×k) · rhsᵀ`, `rhs` the `n×k` weight's blocks of type
/// `dtype`, read where they lie.
///
/// # Errors
/// [`LlmError::Compute`] for lengths that do not match the shapes, blocks that
/// are not aligned; [`LlmError::Metadata`] for an unsupported type.
pub(crate) fn matmul(
    dtype: GgmlDType,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    rhs: &[u8],
    dst: &mut [f32],
) -> Result<(), LlmError> {
    let kernel = dot::Kernel::detect();
    if kernel != dot::Kernel::Scalar {
        match dtype {
            GgmlDType::Q4_1 => return dot::matmul_q4_1(kernel, (m, k, n), lhs, rhs, dst),
            GgmlDType::Q8_0 => return dot::matmul_q8_0(kernel, (m, k, n), lhs, rhs, dst),
            _ => {}
        }
    }
    with_block_type!(dtype, T, {
        let blocks = view::blocks::<T>(rhs)?;
        check_shapes::<T>((m, k, n), lhs.len(), blocks.len(), dst.len())?;
        k_quants::matmul::<T>((m, k, n), lhs, blocks, dst).map_err(compute)
    })
}

/// As [`matmul`], in f16.
///
/// # Errors
/// As [`matmul`].
pub(crate) fn matmul_f16(
    dtype: GgmlDType,
    (m, k, n): (usize, usize, usize),
    lhs: &[f16],
    rhs: &[u8],
    dst: &mut [f16],
) -> Result<(), LlmError> {
    with_block_type!(dtype, T, {
        let blocks = view::blocks::<T>(rhs)?;
        check_shapes::<T>((m, k, n), lhs.len(), blocks.len(), dst.len())?;
        k_quants::matmul_f16::<T>((m, k, n), lhs, blocks, dst).map_err(compute)
    })
}

fn check_shapes<T: GgmlType>(
    (m, k, n): (usize, usize, usize),
    lhs: usize,
    blocks: usize,
    dst: usize,
) -> Result<(), LlmError> {
    let row_blocks = blocks_per_row(k, T::BLCK_SIZE)?;
    if T::BLCK_SIZE != T::VecDotType::BLCK_SIZE {
        return Err(LlmError::Compute(format!(
            "{:?} has no dot product of its block size",
            T::DTYPE
        )));
    }
    let want_lhs = m.checked_mul(k);
    if want_lhs != Some(lhs) {
        return Err(mismatch("the input", lhs, want_lhs));
    }
    let want_blocks = n.checked_mul(row_blocks);
    if want_blocks != Some(blocks) {
        return Err(mismatch("the weight (in blocks)", blocks, want_blocks));
    }
    let want_dst = m.checked_mul(n);
    if want_dst != Some(dst) {
        return Err(mismatch("the output", dst, want_dst));
    }
    Ok(())
}

/// Rows `ids` of a `rows×hidden` table of `dtype` blocks, as f32, one after
/// the other: an embedding lookup that converts the looked-up rows only.
///
/// # Errors
/// [`LlmError::InvalidRequest`] for an id past the table; as [`matmul`].
pub(crate) fn rows_to_f32(
    dtype: GgmlDType,
    table: &[u8],
    ids: &[u32],
    rows: usize,
    hidden: usize,
) -> Result<Vec<f32>, LlmError> {
    with_block_type!(dtype, T, {
        let blocks = view::blocks::<T>(table)?;
        let row_blocks = blocks_per_row(hidden, T::BLCK_SIZE)?;
        if rows.checked_mul(row_blocks) != Some(blocks.len()) {
            return Err(mismatch(
                "the table (in blocks)",
                blocks.len(),
                rows.checked_mul(row_blocks),
            ));
        }
        let total = ids
            .len()
            .checked_mul(hidden)
            .ok_or_else(|| mismatch("the lookup", ids.len(), None))?;
        let mut out = vec![0f32; total];
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(hidden.max(1))) {
            let row = usize::try_from(id).unwrap_or(usize::MAX);
            let src = row
                .checked_mul(row_blocks)
                .and_then(|start| blocks.get(start..start.checked_add(row_blocks)?))
                .filter(|_| row < rows)
                .ok_or_else(|| {
                    LlmError::InvalidRequest(format!(
                        "token id {id} is past the vocabulary of {rows} tokens"
                    ))
                })?;
            T::to_float(src, dst);
        }
        Ok(out)
    })
}

/// All `elems` values of a tensor of `dtype` blocks, as f32.
///
/// # Errors
/// As [`matmul`].
pub(crate) fn to_f32(dtype: GgmlDType, bytes: &[u8], elems: usize) -> Result<Vec<f32>, LlmError> {
    with_block_type!(dtype, T, {
        let blocks = view::blocks::<T>(bytes)?;
        let want = blocks_per_row(elems, T::BLCK_SIZE)?;
        if want != blocks.len() {
            return Err(mismatch("the tensor (in blocks)", blocks.len(), Some(want)));
        }
        let mut out = vec![0f32; elems];
        T::to_float(blocks, &mut out);
        Ok(out)
    })
}
