//! Q8_0 weights against Q8_0 activations: the activations rounded exactly as
//! candle rounds them, and the scalar dot product that reproduces candle's
//! sums (the reference the AVX2 kernel is tested against).

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

/// `xs` (a whole number of blocks) as Q8_0 blocks, rounded as candle's
/// `quantize_row_q8_0` rounds them.
pub(crate) fn quantize_q8_0(xs: &[f32]) -> Vec<ActQ8_0> {
    xs.chunks_exact(QK)
        .map(|block| {
            let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; QK];
            for (q, &x) in qs.iter_mut().zip(block) {
                // In range: |x * id| <= 127 (`as` saturates the rest).
                #[allow(clippy::cast_possible_truncation)]
                let v = f32::round(x * id) as i8;
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
