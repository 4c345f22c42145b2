//! Zero-copy NumPy views of a leased tensor's bytes (the mock device's
//! memory, where the sealed bytes lie).
//!
//! A [`TensorMemory`] hands NumPy the tensor's address, dtype and shape
//! through NumPy's array interface (`__array_interface__`, version 3) with
//! the read-only flag set. `numpy.asarray` then makes an array over those
//! bytes whose `base` is this object, so the array keeps it alive, and it
//! keeps the shard alive (a lease handle holds the shard's `Arc`): the
//! shard's memory (a map that never moves while its buffer lives) is never
//! freed or reused while any array over it exists. No `unsafe` code is
//! needed on this side; the invariant NumPy relies on, "the address is
//! readable for `len` bytes for as long as the base object lives", holds
//! because the address was read through an open lease and the base holds
//! what owns the memory.
//!
//! What such an array reads after its lease ends: the shard's current
//! bytes, which no lease guarantees any more (a later corruption shows in
//! it, and nothing verifies it); `Tensor.numpy()` itself raises `UsageError`
//! once the lease has ended, so a new view always needs a new, verified lease.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::worker::HostRegion;

/// NumPy's type string for a safetensors dtype, and whether the view is
/// the raw bytes (dtypes NumPy has no type for with whole-byte elements).
/// `BF16` is shown as `uint16` (NumPy has no bfloat16); 8-bit floats as
/// `uint8`; sub-byte types (`F4`, `F6_*`) as raw bytes.
pub(crate) fn numpy_type(dtype: &str) -> (&'static str, bool) {
    match dtype {
        "F64" => ("<f8", false),
        "F32" => ("<f4", false),
        "F16" => ("<f2", false),
        "BF16" | "U16" => ("<u2", false),
        "I64" => ("<i8", false),
        "I32" => ("<i4", false),
        "I16" => ("<i2", false),
        "I8" => ("|i1", false),
        "U64" => ("<u8", false),
        "U32" => ("<u4", false),
        "BOOL" => ("|b1", false),
        "C64" => ("<c8", false),
        "U8" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" => ("|u1", false),
        _ => ("|u1", true),
    }
}

/// The bytes of one tensor as NumPy sees them (private: reached through
/// `Tensor.numpy()`, whose array has this object as its `base`).
#[pyclass(frozen, module = "vram_residency._native", name = "_TensorMemory")]
pub(crate) struct TensorMemory {
    region: HostRegion,
    typestr: &'static str,
    shape: Vec<u64>,
}

impl TensorMemory {
    /// A view of `region` as `shape` elements of `dtype` (the raw bytes
    /// for dtypes NumPy has no type for).
    pub(crate) fn new(region: HostRegion, dtype: &str, shape: &[u64]) -> Self {
        let (typestr, raw) = numpy_type(dtype);
        let shape = if raw {
            vec![region.len as u64]
        } else {
            shape.to_vec()
        };
        Self {
            region,
            typestr,
            shape,
        }
    }
}

impl TensorMemory {
    /// The address and length of the bytes viewed (`Lease.arrays()`'s base
    /// arrays are made over them).
    pub(crate) fn bytes(&self) -> (usize, usize) {
        (self.region.address, self.region.len)
    }
}

#[pymethods]
impl TensorMemory {
    /// NumPy's array interface (version 3): read-only data at the tensor's
    /// address, kept alive by this object.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", PyTuple::new(py, &self.shape)?)?;
        d.set_item("typestr", self.typestr)?;
        // (address, read_only): NumPy marks the array not writeable.
        d.set_item("data", (self.region.address, true))?;
        Ok(d)
    }

    /// Bytes viewed.
    fn __len__(&self) -> usize {
        self.region.len
    }

    fn __repr__(&self) -> String {
        format!(
            "<vram_residency tensor memory: {} bytes, shard lease {}>",
            self.region.len,
            if self.region.lease_open() {
                "open"
            } else {
                "ended"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::numpy_type;

    #[test]
    fn every_safetensors_dtype_has_a_numpy_type_of_its_width() {
        for (dtype, want) in [
            ("F64", ("<f8", false)),
            ("F32", ("<f4", false)),
            ("F16", ("<f2", false)),
            ("BF16", ("<u2", false)),
            ("I8", ("|i1", false)),
            ("U8", ("|u1", false)),
            ("F8_E4M3", ("|u1", false)),
            ("BOOL", ("|b1", false)),
            ("F4", ("|u1", true)),
            ("F6_E2M3", ("|u1", true)),
            ("C64", ("<c8", false)),
        ] {
            assert_eq!(numpy_type(dtype), want, "{dtype}");
            // A typed view's element is as wide as the dtype's element.
            let (typestr, raw) = want;
            if !raw {
                let bytes: u64 = typestr[2..].parse().unwrap();
                assert_eq!(
                    Some(bytes * 8),
                    vram_format::Dtype::from_safetensors(dtype).map(vram_format::Dtype::block_bits),
                    "{dtype}"
                );
            }
        }
    }
}
