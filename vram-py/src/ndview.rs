//! `Lease.arrays()`'s views: one NumPy array per tensor, made with NumPy's C
//! API (`PyArray_NewFromDescr`, then `PyArray_SetBaseObject`) over the
//! memory of one read-only `uint8` array per shard, its `base`.
//!
//! The second module of this crate with `unsafe` code (the other is
//! `dlpack.rs`). What makes it sound: the base array is read whole (its data
//! pointer and length come from NumPy, not from us); every view's bytes,
//! `offset .. offset + itemsize × Π shape`, are checked to lie inside it
//! with checked arithmetic before the call; the view holds a reference to
//! the base, which holds what owns the shard's memory (see `view.rs`), so
//! no view outlives the bytes it reads; and no view is writeable, as no
//! writeable flag is given and its base is read-only.
//!
//! The same views as `numpy.ndarray(shape, dtype, base, offset)`, at about
//! a fifth of the cost per tensor (no argument parsing, no buffer protocol
//! round trip on the base).

use std::ptr;

use numpy::npyffi::{self, npy_intp, NpyTypes, NPY_ARRAY_C_CONTIGUOUS, PY_ARRAY_API};
use numpy::{PyArrayDescr, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::worker::Failure;

/// A shard's base array: one-dimensional, `uint8`, C-contiguous and
/// read-only, as `numpy.asarray` makes it from the shard's
/// `__array_interface__`.
pub(crate) struct Base<'py> {
    array: Bound<'py, PyUntypedArray>,
    data: *mut u8,
    len: usize,
}

impl<'py> Base<'py> {
    /// Checks that `array` is such a base and reads where its bytes lie.
    pub(crate) fn of(array: Bound<'py, PyAny>) -> PyResult<Self> {
        let not_a_base = || Failure::env("a shard's memory is not a read-only uint8 array");
        let array = array
            .cast_into::<PyUntypedArray>()
            .map_err(|_| not_a_base())?;
        let py = array.py();
        if array.ndim() != 1
            || !array.is_c_contiguous()
            || array.dtype().itemsize() != 1
            || !array.dtype().is_equiv_to(&numpy::dtype::<u8>(py))
        {
            return Err(not_a_base().into());
        }
        // SAFETY: `array` is a live `ndarray` (checked by the cast above), so
        // `as_array_ptr` points to its `PyArrayObject` for as long as
        // `array` is held; `data` is read, not written.
        let data = unsafe { (*array.as_array_ptr()).fields.data }.cast::<u8>();
        // SAFETY: the same object; `flags` is read, not written.
        let flags = unsafe { (*array.as_array_ptr()).fields.flags };
        if flags & npyffi::NPY_ARRAY_WRITEABLE != 0 {
            return Err(not_a_base().into());
        }
        let len = array.len();
        Ok(Self { array, data, len })
    }

    /// A read-only, C-contiguous view of `dims` elements of `dtype` from
    /// byte `offset` of the base, whose `base` is the base array.
    ///
    /// # Errors
    /// `EnvironmentError` when the view would reach outside the base (a
    /// plan that is not this shard's) or a size overflows; NumPy's own
    /// error when it cannot make the array.
    pub(crate) fn view(
        &self,
        dtype: &Bound<'py, PyArrayDescr>,
        dims: &[npy_intp],
        offset: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.array.py();
        let outside = || Failure::env("a tensor's view reaches outside its shard's memory");
        let mut elements: usize = 1;
        for &d in dims {
            let d = usize::try_from(d).map_err(|_| outside())?;
            elements = elements.checked_mul(d).ok_or_else(outside)?;
        }
        let bytes = elements.checked_mul(dtype.itemsize()).ok_or_else(outside)?;
        let end = offset.checked_add(bytes).ok_or_else(outside)?;
        if end > self.len {
            return Err(outside().into());
        }
        let nd = i32::try_from(dims.len()).map_err(|_| outside())?;
        // NumPy reads the dimensions (it copies them) and never writes them.
        let mut dims = dims.to_vec();
        // SAFETY: `offset <= end <= self.len`, the base's length in bytes,
        // so the pointer stays inside (or one past the end of) the base's
        // memory, one allocation that NumPy vouches for.
        let data = unsafe { self.data.add(offset) };
        // NumPy's constructor steals a reference to the descriptor.
        let descr = dtype.clone().into_dtype_ptr();
        // SAFETY: the API table is NumPy's (rust-numpy loads it, and raises
        // if NumPy cannot be imported) and the GIL is held (`py`). `descr`
        // is an owned reference NumPy takes; `dims` holds `nd` dimensions
        // and outlives the call; no strides (C order, computed by NumPy);
        // `data .. data + bytes` lies inside the base's memory (checked
        // above) and is only read: the flags carry no `WRITEABLE`; no
        // `obj` (no subclass hook).
        let raw = unsafe {
            PY_ARRAY_API.PyArray_NewFromDescr(
                py,
                npyffi::get_type_object(py, NpyTypes::PyArray_Type),
                descr,
                nd,
                dims.as_mut_ptr(),
                ptr::null_mut(),
                data.cast(),
                NPY_ARRAY_C_CONTIGUOUS,
                ptr::null_mut(),
            )
        };
        // SAFETY: `raw` is a new (owned) reference or null with NumPy's
        // exception set, which `from_owned_ptr_or_err` turns into `PyErr`.
        let array = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?;
        let base = self.array.clone().into_any().into_ptr();
        // SAFETY: `raw` is the array just made (non-null: checked above),
        // whose base is not yet set; NumPy steals the reference to `base`,
        // also when it fails (then `array` is dropped and frees the view).
        let set = unsafe {
            PY_ARRAY_API.PyArray_SetBaseObject(py, raw.cast::<npyffi::PyArrayObject>(), base)
        };
        if set != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(array)
    }
}

/// NumPy's dtype for a type string (`"<f4"`, `"|u1"`, ...).
///
/// # Errors
/// NumPy's, for a type string it does not know.
pub(crate) fn dtype<'py>(py: Python<'py>, typestr: &str) -> PyResult<Bound<'py, PyArrayDescr>> {
    PyArrayDescr::new(py, typestr)
}
