//! Quantized matmuls of this crate's own, for the types where candle's
//! default x86 build has only a scalar loop (Q4_1: most of a SmolLM2 decode
//! step): the scalar reference (`q4_1.rs`) or an AVX2 kernel (`avx2.rs`)
//! chosen at run time when the CPU has it.

use super::q4_1::{dot_q4_1_scalar, quantize_q8_1, ActQ8_1, Q4_1_BYTES, QK};
use super::q8_0::{dot_q8_0_scalar, quantize_q8_0, ActQ8_0, Q8_0_BYTES};
use crate::LlmError;

/// Which dot product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// The reference, any CPU.
    Scalar,
    /// AVX2, FMA and F16C intrinsics (checked at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::avx2::available() {
            return Self::Avx2;
        }
        Self::Scalar
    }

    fn dot_q4_1(self, row: &[u8], acts: &[ActQ8_1]) -> f32 {
        match self {
            Self::Scalar => dot_q4_1_scalar(row, acts),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                super::avx2::dot_q4_1(row, acts).unwrap_or_else(|| dot_q4_1_scalar(row, acts))
            }
        }
    }

    fn dot_q8_0(self, row: &[u8], acts: &[ActQ8_0]) -> f32 {
        match self {
            Self::Scalar => dot_q8_0_scalar(row, acts),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                super::avx2::dot_q8_0(row, acts).unwrap_or_else(|| dot_q8_0_scalar(row, acts))
            }
        }
    }
}

/// `dst (m×n) = lhs (m×k) · Wᵀ` for a Q4_1 weight `W` (`n` rows of `k`
/// values, `w` its bytes), with `kernel`.
///
/// # Errors
/// [`LlmError::Compute`] when the lengths do not match the shapes.
pub(crate) fn matmul_q4_1(
    kernel: Kernel,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    w: &[u8],
    dst: &mut [f32],
) -> Result<(), LlmError> {
    let row_bytes = (k / QK).checked_mul(Q4_1_BYTES);
    let ok = k.is_multiple_of(QK)
        && m.checked_mul(k) == Some(lhs.len())
        && m.checked_mul(n) == Some(dst.len())
        && row_bytes.and_then(|r| r.checked_mul(n)) == Some(w.len());
    let Some(row_bytes) = row_bytes.filter(|&r| ok && r > 0) else {
        return Err(LlmError::Compute(format!(
            "Q4_1 matmul: shapes ({m}, {k}, {n}) do not match {} input values, {} weight bytes, {} outputs",
            lhs.len(),
            w.len(),
            dst.len()
        )));
    };
    for (x, out) in lhs.chunks_exact(k).zip(dst.chunks_exact_mut(n)) {
        let acts = quantize_q8_1(x);
        for (row, o) in w.chunks_exact(row_bytes).zip(out.iter_mut()) {
            *o = kernel.dot_q4_1(row, &acts);
        }
    }
    Ok(())
}

/// As [`matmul_q4_1`], for a Q8_0 weight.
///
/// # Errors
/// As [`matmul_q4_1`].
pub(crate) fn matmul_q8_0(
    kernel: Kernel,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    w: &[u8],
    dst: &mut [f32],
) -> Result<(), LlmError> {
    let row_bytes = (k / QK).checked_mul(Q8_0_BYTES);
    let ok = k.is_multiple_of(QK)
        && m.checked_mul(k) == Some(lhs.len())
        && m.checked_mul(n) == Some(dst.len())
        && row_bytes.and_then(|r| r.checked_mul(n)) == Some(w.len());
    let Some(row_bytes) = row_bytes.filter(|&r| ok && r > 0) else {
        return Err(LlmError::Compute(format!(
            "Q8_0 matmul: shapes ({m}, {k}, {n}) do not match {} input values, {} weight bytes, {} outputs",
            lhs.len(),
            w.len(),
            dst.len()
        )));
    };
    for (x, out) in lhs.chunks_exact(k).zip(dst.chunks_exact_mut(n)) {
        let acts = quantize_q8_0(x);
        for (row, o) in w.chunks_exact(row_bytes).zip(out.iter_mut()) {
            *o = kernel.dot_q8_0(row, &acts);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::print_stderr
)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{self, BlockQ4_1};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (h >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn q4_1(rows: usize, k: usize, seed: u32) -> Vec<u8> {
        let t = Tensor::from_vec(values(rows * k, seed), (rows, k), &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::Q4_1)
            .unwrap()
            .data()
            .unwrap()
            .into_owned()
    }

    /// The scalar reference agrees with candle's own matmul up to the
    /// rounding of the activations (ggml's x86 rounding here, candle's there:
    /// a value that rounds the other way moves a sum by one step of its
    /// block); the AVX2 kernel agrees with the scalar reference to rounding,
    /// on odd block counts and odd row counts too.
    #[test]
    fn the_scalar_reference_is_candles_matmul_and_avx2_agrees_with_it() {
        for &(m, blocks, n) in &[
            (1, 1, 1),
            (1, 2, 3),
            (1, 3, 5),
            (2, 7, 9),
            (3, 18, 33),
            (1, 48, 64),
        ] {
            let k = blocks * QK;
            let w = q4_1(n, k, 7);
            let lhs = values(m * k, 3);
            let mut scalar = vec![0f32; m * n];
            matmul_q4_1(Kernel::Scalar, (m, k, n), &lhs, &w, &mut scalar).unwrap();
            // candle's own loop asks for an even number of blocks (a debug
            // assertion); ours takes any.
            if blocks % 2 == 0 {
                let mut reference = vec![0f32; m * n];
                let view = crate::kernels::view::blocks::<BlockQ4_1>(&w).unwrap();
                k_quants::matmul::<BlockQ4_1>((m, k, n), &lhs, view, &mut reference).unwrap();
                let worst = scalar
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                // A step is at most 15 / 127 of the block's largest weight
                // times its largest activation (both <= 1 here): a few such
                // flips per row at most.
                assert!(worst <= 0.05, "({m}, {k}, {n}): {worst} from candle's");
            }

            let fast = Kernel::detect();
            if fast == Kernel::Scalar {
                eprintln!("*** this CPU has no AVX2+FMA: only the scalar kernel was tested ***");
                continue;
            }
            let mut out = vec![0f32; m * n];
            matmul_q4_1(fast, (m, k, n), &lhs, &w, &mut out).unwrap();
            for (a, b) in out.iter().zip(&scalar) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{a} vs {b} ({m}, {k}, {n})"
                );
            }
        }
    }

    /// The Q8_0 scalar reference is candle's generic dot product over the
    /// same activation blocks, bit for bit; the AVX2 kernel agrees with it
    /// to rounding.
    #[test]
    fn the_q8_0_reference_is_candles_and_avx2_agrees_with_it() {
        use candle_core::quantized::k_quants::{BlockQ8_0, GgmlType};
        for &(m, blocks, n) in &[(1, 1, 1), (1, 3, 5), (2, 7, 9), (1, 18, 33)] {
            let k = blocks * QK;
            let t = Tensor::from_vec(values(n * k, 5), (n, k), &Device::Cpu).unwrap();
            let w = QTensor::quantize(&t, GgmlDType::Q8_0)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            let lhs = values(m * k, 9);
            let mut scalar = vec![0f32; m * n];
            matmul_q8_0(Kernel::Scalar, (m, k, n), &lhs, &w, &mut scalar).unwrap();
            let view = crate::kernels::view::blocks::<BlockQ8_0>(&w).unwrap();
            for (row, x) in lhs.chunks_exact(k).enumerate() {
                // Our activation blocks, laid out as candle's `BlockQ8_0`.
                let bytes: Vec<u8> = quantize_q8_0(x)
                    .iter()
                    .flat_map(|a| {
                        let mut b = half::f16::from_f32(a.d).to_le_bytes().to_vec();
                        b.extend(a.qs.iter().map(|q| q.cast_unsigned()));
                        b
                    })
                    .collect();
                let acts = crate::kernels::view::blocks::<BlockQ8_0>(&bytes).unwrap();
                for col in 0..n {
                    let wrow = &view[col * blocks..(col + 1) * blocks];
                    let expect = BlockQ8_0::vec_dot_unopt(k, wrow, acts);
                    assert_eq!(scalar[row * n + col], expect, "({m}, {k}, {n})");
                }
            }
            let fast = Kernel::detect();
            if fast == Kernel::Scalar {
                eprintln!(
                    "*** this CPU has no AVX2+FMA+F16C: only the scalar kernel was tested ***"
                );
                continue;
            }
            let mut out = vec![0f32; m * n];
            matmul_q8_0(fast, (m, k, n), &lhs, &w, &mut out).unwrap();
            for (a, b) in out.iter().zip(&scalar) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{a} vs {b} ({m}, {k}, {n})"
                );
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let w = q4_1(2, 32, 1);
        let mut out = vec![0f32; 2];
        let e = matmul_q4_1(Kernel::detect(), (1, 64, 2), &[0.0; 64], &w, &mut out).unwrap_err();
        assert!(e.to_string().contains("Q4_1"), "{e}");
        let e = matmul_q4_1(Kernel::detect(), (1, 33, 2), &[0.0; 33], &w, &mut out).unwrap_err();
        assert!(e.to_string().contains("Q4_1"), "{e}");
    }
}
