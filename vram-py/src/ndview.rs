//! `Lease.arrays()`'s views: one NumPy array per tensor, made with NumPy's C
//! API (`PyArray_NewFromDescr`, then `PyArray_SetBaseObject`) over the
//! memory of one read-only `uint8` array per shard, its `base`.
//!
//! The second module of this crate with `unsafe` code (the other is
//! `dlpack.rs`). What makes it sound: the base array is made over a shard's
//! memory as read through an open lease ([`Base::over`]), and its `base` is
//! the `_TensorMemory` that holds that lease's handle, so the bytes stay
//! mapped for as long as the base array lives (the invariant `view.rs`
//! states for every array over the mock's memory); every view's bytes,
//! `offset .. offset + itemsize × Π shape`, are checked to lie inside the
//! base with checked arithmetic before the call; each view holds a
//! reference to the base, so no view outlives the bytes it reads; and no
//! array is writeable, as no writeable flag is given.
//!
//! The same arrays as `numpy.asarray(memory)` and then
//! `numpy.ndarray(shape, dtype, base, offset)` for each tensor, at about a
//! fifth of the cost per tensor (no argument parsing, no array interface
//! dictionary, no buffer protocol round trip on the base), which matters
//! most where it is paid: once per request, with caches cold from the
//! request before.

use std::ptr;

use numpy::npyffi::{self, npy_intp, NpyTypes, NPY_ARRAY_C_CONTIGUOUS, PY_ARRAY_API};
use numpy::{PyArrayDescr, PyArrayDescrMethods};
use pyo3::prelude::*;

use crate::view::TensorMemory;
use crate::worker::Failure;

/// A shard's base array: one-dimensional, `uint8`, C-contiguous and
/// read-only, over the shard's memory, with the `_TensorMemory` that keeps
/// that memory alive as its `base`.
pub(crate) struct Base<'py> {
    array: Bound<'py, PyAny>,
    data: *mut u8,
    len: usize,
}

impl<'py> Base<'py> {
    /// The base array over `memory`'s bytes (a whole shard, as `uint8`).
    ///
    /// # Errors
    /// `EnvironmentError` when the shard is too large for NumPy's
    /// dimensions; NumPy's own error when it cannot make the array.
    pub(crate) fn over(memory: Bound<'py, TensorMemory>) -> PyResult<Self> {
        let py = memory.py();
        let (address, len) = memory.get().bytes();
        let mut dims = [npy_intp::try_from(len)
            .map_err(|_| Failure::env("a shard too large for NumPy's dimensions"))?];
        let data = address as *mut u8;
        // SAFETY: `data .. data + len` is the shard's memory as read through
        // an open lease (`Leased::shard_regions`), which stays mapped while
        // `memory` lives (it holds the lease handle, and so the shard), and
        // `memory` becomes the array's base.
        let array = unsafe {
            read_only_array(
                py,
                &numpy::dtype::<u8>(py),
                &mut dims,
                data,
                memory.into_any(),
            )
        }?;
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
        // A tensor's few dimensions are passed from the stack.
        let mut inline = [0 as npy_intp; 8];
        let mut heap = Vec::new();
        let dims: &mut [npy_intp] = match inline.get_mut(..dims.len()) {
            Some(slot) => {
                slot.copy_from_slice(dims);
                slot
            }
            None => {
                heap.extend_from_slice(dims);
                &mut heap
            }
        };
        // SAFETY: `offset <= end <= self.len`, the base's length in bytes,
        // so the pointer stays inside (or one past the end of) the base's
        // memory (`Base::over`).
        let data = unsafe { self.data.add(offset) };
        // SAFETY: `data .. data + bytes`, `bytes` being `itemsize × Π dims`,
        // lies inside the base's memory (checked above), which the base
        // array keeps alive and which becomes the view's base.
        unsafe { read_only_array(py, dtype, dims, data, self.array.clone()) }
    }
}

/// A new read-only, C-contiguous array of `dims` elements of `dtype` at
/// `data`, whose `base` is `base`: `PyArray_NewFromDescr`, then
/// `PyArray_SetBaseObject`.
///
/// # Safety
/// `data .. data + itemsize × Π dims` must be readable for as long as
/// `base` lives, and never written through another path that NumPy could
/// observe as a write of its own (the array carries no `WRITEABLE` flag).
unsafe fn read_only_array<'py>(
    py: Python<'py>,
    dtype: &Bound<'py, PyArrayDescr>,
    dims: &mut [npy_intp],
    data: *mut u8,
    base: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let nd = i32::try_from(dims.len())
        .map_err(|_| Failure::env("a tensor with more dimensions than NumPy takes"))?;
    // NumPy's constructor steals a reference to the descriptor.
    let descr = dtype.clone().into_dtype_ptr();
    // SAFETY: the API table is NumPy's (rust-numpy loads it, and raises if
    // NumPy cannot be imported) and the GIL is held (`py`). `descr` is an
    // owned reference NumPy takes; `dims` holds `nd` dimensions and outlives
    // the call (NumPy copies them and never writes them); no strides (C
    // order, computed by NumPy); the bytes at `data` are readable (the
    // caller's contract) and only read: the flags carry no `WRITEABLE`; no
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
    set_base(&array, base)?;
    Ok(array)
}

/// Makes `base` the base of `array`, an array just made over memory that
/// `base` keeps alive (and that has no base yet).
fn set_base<'py>(array: &Bound<'py, PyAny>, base: Bound<'py, PyAny>) -> PyResult<()> {
    let py = array.py();
    // SAFETY: `array` was made by `PyArray_NewFromDescr` (an `ndarray`, so
    // the cast to `PyArrayObject` is its layout) and its base is not yet
    // set; NumPy steals the reference to `base`, also when it fails (then
    // the caller drops `array`, which frees it).
    let set = unsafe {
        PY_ARRAY_API.PyArray_SetBaseObject(
            py,
            array.as_ptr().cast::<npyffi::PyArrayObject>(),
            base.into_ptr(),
        )
    };
    if set != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// NumPy's dtype for a type string (`"<f4"`, `"|u1"`, ...).
///
/// # Errors
/// NumPy's, for a type string it does not know.
pub(crate) fn dtype<'py>(py: Python<'py>, typestr: &str) -> PyResult<Bound<'py, PyArrayDescr>> {
    PyArrayDescr::new(py, typestr)
}
