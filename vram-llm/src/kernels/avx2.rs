//! The AVX2 + FMA (+ F16C) Q4_1 × Q8_1 and Q8_0 × Q8_0 dot products (ggml's
//! `ggml_vec_dot_q4_1_q8_1` and `ggml_vec_dot_q8_0_q8_0` for AVX2), chosen
//! at run time. The only intrinsics of the crate; the scalar references in
//! `q4_1.rs` and `q8_0.rs` are what they are tested against.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256, _mm256_and_si256, _mm256_castps256_ps128, _mm256_castsi128_si256, _mm256_cvtepi32_ps,
    _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_insertf128_si256, _mm256_loadu_si256,
    _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_set1_epi16, _mm256_set1_epi8, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_sign_epi8, _mm_add_ps, _mm_add_ss, _mm_cvtph_ps, _mm_cvtsi32_si128,
    _mm_cvtss_f32, _mm_loadu_si128, _mm_movehdup_ps, _mm_movehl_ps, _mm_srli_epi16,
};

use super::q4_1::{ActQ8_1, Q4_1_BYTES};
use super::q8_0::{ActQ8_0, Q8_0_BYTES};

/// Whether this CPU runs [`dot_q4_1`].
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// Dot product of one Q4_1 row with Q8_1 activations; `None` when the CPU
/// lacks AVX2/FMA or the lengths do not match (the caller then runs the
/// scalar reference).
pub(crate) fn dot_q4_1(row: &[u8], acts: &[ActQ8_1]) -> Option<f32> {
    if !available() || Some(row.len()) != acts.len().checked_mul(Q4_1_BYTES) {
        return None;
    }
    // SAFETY: AVX2, FMA and F16C are present (checked just above), which is all
    // `dot_q4_1_avx2` requires of its caller; it reads only through slices.
    Some(unsafe { dot_q4_1_avx2(row, acts) })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_1_avx2(row: &[u8], acts: &[ActQ8_1]) -> f32 {
    let mut acc: __m256 = _mm256_setzero_ps();
    let mut summs = 0f32;
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for (block, act) in row.chunks_exact(Q4_1_BYTES).zip(acts) {
        let (Some(&[h0, h1, h2, h3]), Some(qs)) = (block.get(..4), block.get(4..Q4_1_BYTES)) else {
            continue;
        };
        // The block's f16 scale and minimum, converted in registers (F16C):
        // a library call per value costs as much as the block's products.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([h0, h1, h2, h3])));
        let d = _mm_cvtss_f32(dm);
        let m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
        summs += m * act.s;
        let mut nibbles = [0u8; 16];
        nibbles.copy_from_slice(qs);
        // SAFETY: `nibbles` is 16 readable bytes and `act.qs` 32;
        // `_mm_loadu_si128` / `_mm256_loadu_si256` accept any alignment.
        let (packed, y) = unsafe {
            (
                _mm_loadu_si128(nibbles.as_ptr().cast()),
                _mm256_loadu_si256(act.qs.as_ptr().cast()),
            )
        };
        // Low nibbles in the first 16 bytes, high nibbles in the last 16:
        // the order of the activations (candle's `qs[j]`, `qs[j + 16]`).
        let x = _mm256_and_si256(
            _mm256_insertf128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1),
            low,
        );
        // u8 (<= 15) × i8 pairs summed to i16 (|sum| <= 3810: no saturation),
        // then to i32, then to f32.
        let products = _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones);
        let scale = _mm256_set1_ps(d * act.d);
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(products), acc);
    }
    let sum128 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let sum64 = _mm_add_ps(sum128, _mm_movehl_ps(sum128, sum128));
    let sum32 = _mm_add_ss(sum64, _mm_movehdup_ps(sum64));
    _mm_cvtss_f32(sum32) + summs
}

/// Dot product of one Q8_0 row with Q8_0 activations; `None` as for
/// [`dot_q4_1`].
pub(crate) fn dot_q8_0(row: &[u8], acts: &[ActQ8_0]) -> Option<f32> {
    if !available() || Some(row.len()) != acts.len().checked_mul(Q8_0_BYTES) {
        return None;
    }
    // SAFETY: AVX2, FMA and F16C are present (checked just above), which is
    // all `dot_q8_0_avx2` requires of its caller; it reads only through slices.
    Some(unsafe { dot_q8_0_avx2(row, acts) })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0_avx2(row: &[u8], acts: &[ActQ8_0]) -> f32 {
    let mut acc: __m256 = _mm256_setzero_ps();
    let ones = _mm256_set1_epi16(1);
    for (block, act) in row.chunks_exact(Q8_0_BYTES).zip(acts) {
        let (Some(&[h0, h1]), Some(qs)) = (block.get(..2), block.get(2..Q8_0_BYTES)) else {
            continue;
        };
        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            u16::from_le_bytes([h0, h1]),
        ))));
        let mut weights = [0u8; 32];
        weights.copy_from_slice(qs);
        // SAFETY: `weights` and `act.qs` are 32 readable bytes each;
        // `_mm256_loadu_si256` accepts any alignment.
        let (x, y) = unsafe {
            (
                _mm256_loadu_si256(weights.as_ptr().cast()),
                _mm256_loadu_si256(act.qs.as_ptr().cast()),
            )
        };
        // i8 × i8 through maddubs (u8 × i8): |x| times y with x's sign moved
        // onto y; pairs summed to i16 (|sum| <= 2 × 128 × 127: no
        // saturation), then to i32, then to f32.
        let products = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)),
            ones,
        );
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * act.d), _mm256_cvtepi32_ps(products), acc);
    }
    let sum128 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let sum64 = _mm_add_ps(sum128, _mm_movehl_ps(sum128, sum128));
    let sum32 = _mm_add_ss(sum64, _mm_movehdup_ps(sum64));
    _mm_cvtss_f32(sum32)
}
