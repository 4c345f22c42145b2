//! Q4_1 weights against Q8_1 activations: the activations rounded as
//! llama.cpp's x86 build rounds them (ggml's AVX2 `quantize_row_q8_1`), and
//! the scalar dot product with candle's sums (`vec_dot_q4_1_q8_1`; the
//! reference the AVX2 kernel is tested against).

use half::f16;

/// Values per Q4_1 / Q8_1 block.
pub(crate) const QK: usize = 32;
/// Bytes of one Q4_1 block: f16 scale, f16 minimum, 16 bytes of nibbles.
pub(crate) const Q4_1_BYTES: usize = 20;

/// One block of activations rounded to 8 bits (candle's `BlockQ8_1`, its f16
/// fields widened to f32 once).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActQ8_1 {
    pub(crate) d: f32,
    pub(crate) s: f32,
    pub(crate) qs: [i8; QK],
}

/// `xs` (a whole number of blocks) as Q8_1 blocks, rounded as ggml's x86
/// `quantize_row_q8_1` rounds them: the scale `amax / 127` stored as f16,
/// values multiplied by `127 / amax` and rounded to nearest, ties to even
/// (`_mm256_round_ps`), the block's sum times the f32 scale stored as f16.
/// (candle divides by the f16-bound scale, rounds ties away from zero and
/// multiplies the sum by the f16 scale: a value on the edge rounds the other
/// way, and llama.cpp is the engine the results are compared with.)
pub(crate) fn quantize_q8_1(xs: &[f32]) -> Vec<ActQ8_1> {
    xs.chunks_exact(QK)
        .map(|block| {
            let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut qs = [0i8; QK];
            let mut sum = 0i32;
            for (q, &x) in qs.iter_mut().zip(block) {
                // In range: |x * id| <= 127 (`as` saturates the rest).
                #[allow(clippy::cast_possible_truncation)]
                let v = round_ties_even_small(x * id) as i8;
                *q = v;
                sum = sum.saturating_add(i32::from(v));
            }
            #[allow(clippy::cast_precision_loss)]
            let s = f16::from_f32(d * sum as f32);
            ActQ8_1 {
                d: f16::from_f32(d).to_f32(),
                s: s.to_f32(),
                qs,
            }
        })
        .collect()
}

/// `x` rounded to the nearest integer, ties to even (`_mm256_round_ps` in
/// the default rounding mode), for `|x| < 2^22`: adding and taking away
/// `1.5 × 2^23` leaves the rounding to the f32 addition itself, which rounds
/// to nearest even. (`f32::round_ties_even` is a library call on x86-64's
/// baseline, per activation.)
pub(crate) fn round_ties_even_small(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (x + SHIFT) - SHIFT
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    match bytes.get(at..at.saturating_add(2)) {
        Some(&[a, b]) => f16::from_le_bytes([a, b]).to_f32(),
        _ => 0.0,
    }
}

/// The scale and minimum of a Q4_1 block.
pub(crate) fn q4_1_scales(block: &[u8]) -> (f32, f32) {
    (half_at(block, 0), half_at(block, 2))
}

/// Dot product of one Q4_1 weight row (`row.len() == acts.len() * 20`) with
/// Q8_1 activations: candle's `vec_dot_q4_1_q8_1`, sum for sum.
pub(crate) fn dot_q4_1_scalar(row: &[u8], acts: &[ActQ8_1]) -> f32 {
    let mut sumf = 0f32;
    for (block, act) in row.chunks_exact(Q4_1_BYTES).zip(acts) {
        let (d, m) = q4_1_scales(block);
        let qs = block.get(4..).unwrap_or(&[]);
        let (lo, hi) = act.qs.split_at(QK / 2);
        let sumi: i32 = qs
            .iter()
            .zip(lo.iter().zip(hi))
            .map(|(&q, (&a0, &a1))| {
                i32::from(q & 0x0F)
                    .wrapping_mul(i32::from(a0))
                    .wrapping_add(i32::from(q.wrapping_shr(4)).wrapping_mul(i32::from(a1)))
            })
            .fold(0i32, i32::wrapping_add);
        #[allow(clippy::cast_precision_loss)]
        let block_sum = sumi as f32 * d * act.d + m * act.s;
        sumf += block_sum;
    }
    sumf
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    /// Scale `127 / amax`, ties to even, the sum scaled in f32: a block whose
    /// largest value is 127 keeps its integers and rounds its halves to even.
    #[test]
    fn activations_round_as_ggmls_x86_build() {
        let mut block = [0f32; QK];
        block[0] = 127.0;
        block[1] = 2.5;
        block[2] = 3.5;
        block[3] = -2.5;
        block[4] = -0.5;
        block[5] = 1.49;
        let acts = quantize_q8_1(&block);
        let a = &acts[0];
        assert_eq!(&a.qs[..6], &[127, 2, 4, -2, 0, 1]);
        assert_eq!(a.d, 1.0);
        assert_eq!(a.s, 132.0);
        // An all-zero block: zero scale, zero values (no division by zero).
        let zero = quantize_q8_1(&[0.0; QK]);
        assert_eq!((zero[0].d, zero[0].s), (0.0, 0.0));
        assert!(zero[0].qs.iter().all(|&q| q == 0));
        // The sum is scaled by the f32 scale, then stored as f16.
        let block: Vec<f32> = (0..QK).map(|i| if i == 0 { 1.0 } else { 0.3 }).collect();
        let a = quantize_q8_1(&block)[0];
        let d = 1.0f32 / 127.0;
        let q = (0.3f32 * 127.0).round_ties_even();
        assert_eq!(a.qs[1], 38);
        assert_eq!(a.s, f16::from_f32(d * (127.0 + 31.0 * q)).to_f32());
        assert_eq!(a.d, f16::from_f32(d).to_f32());
    }

    #[test]
    fn the_shift_rounds_as_round_ties_even_over_the_activation_range() {
        let mut x = -130.0f32;
        while x <= 130.0 {
            assert_eq!(round_ties_even_small(x), x.round_ties_even(), "{x}");
            x += 0.03125;
        }
        for x in [0.49999997f32, -0.49999997, 126.5, -126.5, 127.49999, 1e-30] {
            assert_eq!(round_ties_even_small(x), x.round_ties_even(), "{x}");
        }
    }
}
