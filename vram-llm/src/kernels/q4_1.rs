//! Q4_1 weights against Q8_1 activations: the activations rounded exactly
//! as candle rounds them, and the scalar dot product that reproduces
//! candle's sums (the reference the AVX2 kernel is tested against).

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

/// `xs` (a whole number of blocks) as Q8_1 blocks, rounded as candle's
/// `quantize_row_q8_1` rounds them (scale and sum through f16).
pub(crate) fn quantize_q8_1(xs: &[f32]) -> Vec<ActQ8_1> {
    xs.chunks_exact(QK)
        .map(|block| {
            let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let d16 = f16::from_f32(d);
            let mut qs = [0i8; QK];
            let mut sum = 0i32;
            for (q, &x) in qs.iter_mut().zip(block) {
                // In range: |x * id| <= 127 (rounding of `id` aside, which
                // `as` saturates).
                #[allow(clippy::cast_possible_truncation)]
                let v = f32::round(x * id) as i8;
                *q = v;
                sum = sum.saturating_add(i32::from(v));
            }
            // half's f16 product: through f32, rounded back to f16.
            #[allow(clippy::cast_precision_loss)]
            let s = f16::from_f32(f16::from_f32(sum as f32).to_f32() * d16.to_f32());
            ActQ8_1 {
                d: d16.to_f32(),
                s: s.to_f32(),
                qs,
            }
        })
        .collect()
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
