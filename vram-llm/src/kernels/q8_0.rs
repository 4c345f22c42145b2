//! Q8_0 weights against Q8_0 activations: the activations rounded as
//! llama.cpp's x86 build rounds them (ggml's AVX2 `quantize_row_q8_0`), and
//! the scalar dot product with candle's sums (the reference the AVX2 kernel
//! is tested against).

use half::f16;

/// Values per Q8_0 block.
pub(crate) const QK: usize = 32;
/// Bytes of one Q8_0 block: an f16 scale and 32 signed bytes.
pub(crate) const Q8_0_BYTES: usize = 34;

/// One block of activations rounded to 8 bits (candle's `BlockQ8_0`, its f16
/// scale widened to f32 once).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActQ8_0 {
    pub(crate) d: f32,
    pub(crate) qs: [i8; QK],
}

/// `xs` (a whole number of blocks) as Q8_0 blocks, rounded as ggml's x86
/// `quantize_row_q8_0` rounds them: values multiplied by `127 / amax`,
/// rounded to nearest with ties to even, the scale `amax / 127` stored as
/// f16 (candle divides by the scale and rounds ties away from zero).
pub(crate) fn quantize_q8_0(xs: &[f32]) -> Vec<ActQ8_0> {
    xs.chunks_exact(QK)
        .map(|block| {
            let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut qs = [0i8; QK];
            for (q, &x) in qs.iter_mut().zip(block) {
                // In range: |x * id| <= 127 (`as` saturates the rest).
                #[allow(clippy::cast_possible_truncation)]
                let v = super::q4_1::round_ties_even_small(x * id) as i8;
                *q = v;
            }
            ActQ8_0 {
                d: f16::from_f32(d).to_f32(),
                qs,
            }
        })
        .collect()
}

/// Dot product of one Q8_0 weight row (`row.len() == acts.len() * 34`) with
/// Q8_0 activations: candle's `vec_dot_q8_0_q8_0` (its generic loop), sum
/// for sum.
pub(crate) fn dot_q8_0_scalar(row: &[u8], acts: &[ActQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (block, act) in row.chunks_exact(Q8_0_BYTES).zip(acts) {
        let (Some(&[a, b]), Some(qs)) = (block.get(..2), block.get(2..Q8_0_BYTES)) else {
            continue;
        };
        let d = f16::from_le_bytes([a, b]).to_f32();
        let sumi: i32 = qs
            .iter()
            .zip(&act.qs)
            .map(|(&q, &y)| i32::from(q.cast_signed()).wrapping_mul(i32::from(y)))
            .fold(0i32, i32::wrapping_add);
        #[allow(clippy::cast_precision_loss)]
        let block_sum = sumi as f32 * d * act.d;
        sumf += block_sum;
    }
    sumf
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn activations_round_ties_to_even_with_the_scale_127_over_amax() {
        let mut block = [0f32; QK];
        block[0] = -127.0;
        block[1] = 2.5;
        block[2] = 3.5;
        block[3] = -4.5;
        let a = quantize_q8_0(&block)[0];
        assert_eq!(&a.qs[..4], &[-127, 2, 4, -4]);
        assert_eq!(a.d, 1.0);
        let zero = quantize_q8_0(&[0.0; QK])[0];
        assert_eq!(zero.d, 0.0);
        assert!(zero.qs.iter().all(|&q| q == 0));
    }
}
