//! The one place where leased bytes are read as candle's block types.
//!
//! A GGUF tensor is an array of `#[repr(C)]` blocks (`BlockQ4_1`: an f16
//! scale, an f16 minimum, 16 bytes of nibbles). candle's kernels take a
//! `&[BlockQ4_1]`; the sealed bytes are a `&[u8]` borrowed from the lease for
//! the duration of one closure. Viewing the one as the other in place is what
//! lets a request compute on the sealed memory without copying it, and safe
//! Rust has no way to say it for types candle does not mark as plain data.
//! The checks that make it sound (size, alignment, length) are made here,
//! before the one `unsafe` block.

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0, GgmlType,
};
use half::f16;

use crate::LlmError;

/// Block types whose every bit pattern is a valid value.
///
/// # Safety
/// An implementor is `Copy`-like plain data: `#[repr(C)]` (or a primitive)
/// made only of integers, integer arrays and floats (f16/f32), with no
/// pointer, reference, `bool`, enum, `UnsafeCell` or `Drop`, so any
/// initialized bytes of its size are a valid value and reading one through a
/// shared reference cannot mutate or free anything.
pub(crate) unsafe trait PlainBlock: GgmlType {}

// SAFETY: f32 is a primitive float: every bit pattern is a valid value.
unsafe impl PlainBlock for f32 {}
// SAFETY: half's f16 is a `#[repr(transparent)]` u16: every bit pattern is valid.
unsafe impl PlainBlock for f16 {}
// SAFETY: `#[repr(C)] { d: f16, qs: [u8; 16] }`: integers and a float only.
unsafe impl PlainBlock for BlockQ4_0 {}
// SAFETY: `#[repr(C)] { d: f16, m: f16, qs: [u8; 16] }`: integers and floats only.
unsafe impl PlainBlock for BlockQ4_1 {}
// SAFETY: `#[repr(C)] { d: f16, qh: [u8; 4], qs: [u8; 16] }`: integers and a float only.
unsafe impl PlainBlock for BlockQ5_0 {}
// SAFETY: `#[repr(C)] { d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }`: integers and floats only.
unsafe impl PlainBlock for BlockQ5_1 {}
// SAFETY: `#[repr(C)] { d: f16, qs: [i8; 32] }`: integers and a float only.
unsafe impl PlainBlock for BlockQ8_0 {}
// SAFETY: `#[repr(C)] { scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16 }`: integers and floats only.
unsafe impl PlainBlock for BlockQ2K {}
// SAFETY: `#[repr(C)] { hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16 }`: integers and a float only.
unsafe impl PlainBlock for BlockQ3K {}
// SAFETY: `#[repr(C)] { d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] }`: integers and floats only.
unsafe impl PlainBlock for BlockQ4K {}
// SAFETY: `#[repr(C)] { d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }`: integers and floats only.
unsafe impl PlainBlock for BlockQ5K {}
// SAFETY: `#[repr(C)] { ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 }`: integers and a float only.
unsafe impl PlainBlock for BlockQ6K {}

/// `bytes` as a slice of `T` blocks, in place.
///
/// # Errors
/// [`LlmError::Compute`] when `T`'s size is not the GGUF block size of its
/// type, when `bytes` is not a whole number of blocks or when it is not
/// aligned for `T` (a GGUF aligns tensor data to 32 bytes; a device buffer
/// starts on a page).
pub(crate) fn blocks<T: PlainBlock>(bytes: &[u8]) -> Result<&[T], LlmError> {
    let size = size_of::<T>();
    if size == 0 || size != T::DTYPE.type_size() {
        return Err(LlmError::Compute(format!(
            "{:?} blocks are {size} bytes here, {} in GGUF",
            T::DTYPE,
            T::DTYPE.type_size()
        )));
    }
    if bytes.is_empty() {
        return Ok(&[]);
    }
    if !bytes.len().is_multiple_of(size) {
        return Err(LlmError::Compute(format!(
            "{} bytes are not a whole number of {:?} blocks of {size} bytes",
            bytes.len(),
            T::DTYPE
        )));
    }
    if bytes.as_ptr().align_offset(align_of::<T>()) != 0 {
        return Err(LlmError::Compute(format!(
            "{:?} blocks are not aligned to {} bytes in device memory",
            T::DTYPE,
            align_of::<T>()
        )));
    }
    let count = bytes.len().checked_div(size).unwrap_or(0);
    // SAFETY: the pointer is non-null and aligned for `T` (checked above);
    // `count * size_of::<T>() == bytes.len()` (checked above), so the slice
    // covers exactly the borrowed, initialized bytes; `T: PlainBlock` makes
    // every bit pattern a valid `T`; the result borrows `bytes`, so it lives
    // no longer than the lease's closure that lent them, and no one writes
    // them meanwhile (the device's read guard is held for that closure).
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), count) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Tensor};

    fn quantized_bytes(dtype: GgmlDType, values: &[f32]) -> Vec<u8> {
        let t = Tensor::from_slice(values, (1, values.len()), &Device::Cpu).unwrap();
        let q = candle_core::quantized::QTensor::quantize(&t, dtype).unwrap();
        q.data().unwrap().into_owned()
    }

    #[test]
    fn a_view_reads_the_same_values_candle_wrote() {
        let values: Vec<f32> = (0..256)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let q = quantized_bytes(GgmlDType::Q4_1, &values);
        // An aligned copy, as a device buffer would be.
        let mut buf = vec![0u8; q.len() + 8];
        let base = buf.as_ptr().align_offset(8);
        let bytes = &mut buf[base..base + q.len()];
        bytes.copy_from_slice(&q);
        let view = blocks::<BlockQ4_1>(bytes).unwrap();
        assert_eq!(view.len(), 8);
        let mut out = vec![0f32; 256];
        BlockQ4_1::to_float(view, &mut out);
        let t = Tensor::from_slice(&values, (1, 256), &Device::Cpu).unwrap();
        let expect = candle_core::quantized::QTensor::quantize(&t, GgmlDType::Q4_1)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out, expect);

        let f = blocks::<f32>(&bytes[..16]).unwrap();
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn short_misaligned_and_odd_lengths_are_refused_not_read() {
        let bytes = [0u8; 64];
        let e = blocks::<BlockQ8_0>(&bytes[..33]).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        // An address one past an aligned one cannot be aligned for f32.
        let base = bytes.as_ptr().align_offset(4);
        let e = blocks::<f32>(&bytes[base + 1..base + 9]).unwrap_err();
        assert!(e.to_string().contains("aligned"), "{e}");
        assert!(blocks::<BlockQ4_0>(&[]).unwrap().is_empty());
    }
}
