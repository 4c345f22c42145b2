//! DLPack export of a leased tensor: `Tensor.__dlpack__` and
//! `__dlpack_device__`, zero-copy on the mock (host memory) and on CUDA
//! (device memory), for `torch.from_dlpack`, `numpy.from_dlpack`, CuPy, JAX.
//!
//! The one module of this crate with `unsafe` code: the DLPack C structs
//! are handed to a consumer through a `PyCapsule` that Python's C API
//! creates (`PyCapsule_New`), and the consumer calls back into this module
//! (the deleter, the capsule destructor) with raw pointers.
//!
//! # Ownership (the protocol of the array API standard and of `dlpack.h`)
//!
//! `__dlpack__` allocates one [`DLManagedTensor`] (legacy, capsule name
//! `"dltensor"`) or [`DLManagedTensorVersioned`] (capsule name
//! `"dltensor_versioned"`) on the heap. Its `manager_ctx` is a second heap
//! allocation, a [`Holder`], owning the shape and strides arrays the
//! `DLTensor` points into and the *keep*: the shard's lease handle, which
//! holds the `SealedShard`, hence its device buffer, allocated. Exactly one
//! party frees both, once, through the managed tensor's `deleter`:
//!
//! - a consumer (`from_dlpack`) takes the pointer out of the capsule,
//!   renames the capsule `"used_dltensor"`/`"used_dltensor_versioned"`, and
//!   calls the deleter when its array or tensor no longer needs the memory;
//! - a capsule dropped without being consumed calls the deleter from its
//!   destructor, which does nothing for a renamed (consumed) capsule.
//!
//! The deleter drops only Rust values (no Python object), so a consumer may
//! call it with or without the GIL, from any thread, even after the
//! interpreter has finalised.
//!
//! # What a view reads, and when
//!
//! The bytes are the shard's own memory (no copy). The export is refused
//! once the lease has ended (`UsageError`). A consumed view kept after the
//! lease has ended, or after `Model.release()`, still reads allocated memory
//! (its keep holds the shard), never freed or reused memory: the shard's
//! *current* bytes, which no lease vouches for any more. Its memory is freed
//! when the last view and lease holding the shard are gone.
//!
//! # Read-only
//!
//! A versioned capsule carries [`DLPACK_FLAG_BITMASK_READ_ONLY`]; a legacy
//! one cannot say it. NumPy makes every array it imports from a legacy
//! capsule read-only, and honours the flag on a versioned one
//! (`numpy/_core/src/multiarray/dlpack.c`, `from_dlpack`). PyTorch has no
//! read-only tensors: `torch.from_dlpack` checks a versioned capsule's
//! major version only (`torch/csrc/utils/tensor_new.cpp`,
//! `tensor_fromDLPack`) and its tensor can be written. A write through it
//! would change sealed bytes; the next verification finds it and the model
//! is compromised for good.
//!
//! # Streams (CUDA)
//!
//! No stream synchronisation is needed, and none is done: the address is
//! read through the facade's `DeviceBuffer::memory`, which first waits
//! (`cuStreamSynchronize`) for every copy queued on the buffer's own stream,
//! so every sealed byte is in device memory before the capsule exists; after
//! the seal nothing writes the buffer (it is private to the facade; only the
//! test and demo builds' corruption hooks write it), and a lease's
//! verification only reads it. A consumer's kernels on any stream therefore
//! read finished, unchanging bytes.
//!
//! The other end of a view's life on CUDA: a consumer calls the deleter when
//! it frees its tensor (PyTorch: when the storage's last reference goes),
//! possibly while its own kernels that read the memory are still queued. If
//! that was the last holder of the shard, the backend frees the allocation
//! with `cuMemFree` (not the stream-ordered `cuMemFreeAsync`), which in
//! practice waits for the work queued in its context (PyTorch's allocator
//! relies on the same implicit synchronisation, which NVIDIA does not
//! document as a guarantee). Not exercised on a GPU by this crate's tests.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::worker::{Dtype, Place};

/// `DLPACK_MAJOR_VERSION` and `DLPACK_MINOR_VERSION` of the header these
/// structs follow (dlpack.h v1.0).
pub(crate) const DLPACK_VERSION: DLPackVersion = DLPackVersion { major: 1, minor: 0 };

/// `DLPACK_FLAG_BITMASK_READ_ONLY`: the consumer must not write the data.
pub(crate) const DLPACK_FLAG_BITMASK_READ_ONLY: u64 = 1 << 0;

/// `DLDeviceType::kDLCPU`.
pub(crate) const KDL_CPU: i32 = 1;
/// `DLDeviceType::kDLCUDA`.
pub(crate) const KDL_CUDA: i32 = 2;

// `DLDataTypeCode` values.
const KDL_INT: u8 = 0;
const KDL_UINT: u8 = 1;
const KDL_FLOAT: u8 = 2;
const KDL_BFLOAT: u8 = 4;
const KDL_COMPLEX: u8 = 5;
const KDL_BOOL: u8 = 6;

const LEGACY_NAME: &CStr = c"dltensor";
const VERSIONED_NAME: &CStr = c"dltensor_versioned";

// The structs below are `dlpack.h` v1.0's, field for field and in its
// order (github.com/dmlc/dlpack, include/dlpack/dlpack.h, tag v1.0):
//
//   typedef struct { uint32_t major; uint32_t minor; } DLPackVersion;
//   typedef struct { DLDeviceType device_type; int32_t device_id; } DLDevice;
//   typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
//   typedef struct { void* data; DLDevice device; int32_t ndim;
//     DLDataType dtype; int64_t* shape; int64_t* strides;
//     uint64_t byte_offset; } DLTensor;
//   typedef struct DLManagedTensor { DLTensor dl_tensor; void* manager_ctx;
//     void (*deleter)(struct DLManagedTensor* self); } DLManagedTensor;
//   typedef struct DLManagedTensorVersioned { DLPackVersion version;
//     void* manager_ctx; void (*deleter)(struct DLManagedTensorVersioned* self);
//     uint64_t flags; DLTensor dl_tensor; } DLManagedTensorVersioned;
//
// `DLDeviceType` is a C enum (an `int`, `int32_t` in C++ builds of the
// header). The layout tests below check sizes and offsets against these
// declarations on a 64-bit target.

/// `DLPackVersion`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DLPackVersion {
    pub(crate) major: u32,
    pub(crate) minor: u32,
}

/// `DLDevice`: a device type (`kDLCPU`, `kDLCUDA`, ...) and its ordinal.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DLDevice {
    pub(crate) device_type: i32,
    pub(crate) device_id: i32,
}

/// `DLDataType`: a type code, bits per element, lanes (always 1 here).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DLDataType {
    pub(crate) code: u8,
    pub(crate) bits: u8,
    pub(crate) lanes: u16,
}

/// `DLTensor`: the view itself (data, device, shape, dtype, strides).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct DLTensor {
    pub(crate) data: *mut c_void,
    pub(crate) device: DLDevice,
    pub(crate) ndim: i32,
    pub(crate) dtype: DLDataType,
    pub(crate) shape: *mut i64,
    pub(crate) strides: *mut i64,
    pub(crate) byte_offset: u64,
}

/// `DLManagedTensor`, the legacy (unversioned) managed tensor.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct DLManagedTensor {
    pub(crate) dl_tensor: DLTensor,
    pub(crate) manager_ctx: *mut c_void,
    pub(crate) deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// `DLManagedTensorVersioned` (DLPack 1.x).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct DLManagedTensorVersioned {
    pub(crate) version: DLPackVersion,
    pub(crate) manager_ctx: *mut c_void,
    pub(crate) deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub(crate) flags: u64,
    pub(crate) dl_tensor: DLTensor,
}

/// Exports whose memory is not yet released (capsules not yet deleted,
/// and arrays or tensors made from them): a leak shows as a count that
/// does not return to where it was.
static LIVE_EXPORTS: AtomicUsize = AtomicUsize::new(0);

/// How many exports are alive now.
pub(crate) fn live_exports() -> usize {
    LIVE_EXPORTS.load(Ordering::Acquire)
}

/// A managed tensor's `manager_ctx`: the arrays its `DLTensor` points into
/// and what keeps its memory allocated.
struct Holder {
    shape: Vec<i64>,
    strides: Vec<i64>,
    /// Dropped last: the shard's lease handle (or, in tests, a stand-in).
    _keep: Box<dyn Send>,
}

impl Holder {
    fn new(shape: Vec<i64>, strides: Vec<i64>, keep: Box<dyn Send>) -> Self {
        LIVE_EXPORTS.fetch_add(1, Ordering::AcqRel);
        Self {
            shape,
            strides,
            _keep: keep,
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        LIVE_EXPORTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a tensor cannot be described to DLPack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayoutError(pub(crate) String);

/// How one tensor is shown to DLPack: device, element type, shape and
/// row-major strides (in elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) data: u64,
    pub(crate) device: DLDevice,
    pub(crate) dtype: DLDataType,
    pub(crate) shape: Vec<i64>,
    pub(crate) strides: Vec<i64>,
}

const fn dl(code: u8, bits: u8) -> DLDataType {
    DLDataType {
        code,
        bits,
        lanes: 1,
    }
}

/// The DLPack type of a dtype, and whether the view is its raw bytes
/// instead (one `uint8` dimension over the whole tensor). f32/f16/f64 are
/// `kDLFloat`, bf16 `kDLBfloat`, integers `kDLInt`/`kDLUInt`, `BOOL`
/// `kDLBool`, `C64` (two f32) `kDLComplex` of 64 bits. 8-bit floats
/// (DLPack 1.0 has no code for them) are `uint8` elements of the tensor's
/// shape; quantized GGUF blocks and sub-byte types are raw `uint8` bytes,
/// `Tensor.dtype` (and `Tensor.ggml_type` for GGUF) naming the type.
pub(crate) fn dl_dtype(dtype: Dtype) -> (DLDataType, bool) {
    match dtype {
        Dtype::F64 => (dl(KDL_FLOAT, 64), false),
        Dtype::F32 => (dl(KDL_FLOAT, 32), false),
        Dtype::F16 => (dl(KDL_FLOAT, 16), false),
        Dtype::BF16 => (dl(KDL_BFLOAT, 16), false),
        Dtype::I8 => (dl(KDL_INT, 8), false),
        Dtype::I16 => (dl(KDL_INT, 16), false),
        Dtype::I32 => (dl(KDL_INT, 32), false),
        Dtype::I64 => (dl(KDL_INT, 64), false),
        Dtype::U8 => (dl(KDL_UINT, 8), false),
        Dtype::U16 => (dl(KDL_UINT, 16), false),
        Dtype::U32 => (dl(KDL_UINT, 32), false),
        Dtype::U64 => (dl(KDL_UINT, 64), false),
        Dtype::Bool => (dl(KDL_BOOL, 8), false),
        Dtype::C64 => (dl(KDL_COMPLEX, 64), false),
        Dtype::F8_E4M3
        | Dtype::F8_E5M2
        | Dtype::F8_E8M0
        | Dtype::F8_E4M3FNUZ
        | Dtype::F8_E5M2FNUZ => (dl(KDL_UINT, 8), false),
        _ => (dl(KDL_UINT, 8), true),
    }
}

/// The DLPack device of a place: `(kDLCPU, 0)` for host memory,
/// `(kDLCUDA, ordinal)` for CUDA device memory.
pub(crate) fn dl_device(place: &Place) -> Result<DLDevice, LayoutError> {
    match place {
        Place::Host { .. } => Ok(DLDevice {
            device_type: KDL_CPU,
            device_id: 0,
        }),
        Place::Device { ordinal, .. } => Ok(DLDevice {
            device_type: KDL_CUDA,
            device_id: i32::try_from(*ordinal)
                .map_err(|_| LayoutError(format!("device ordinal {ordinal} out of range")))?,
        }),
    }
}

/// The layout of a tensor of `dtype` and row-major `shape` at `place`:
/// the shape and strides checked against the bytes there.
pub(crate) fn layout(place: &Place, dtype: Dtype, shape: &[u64]) -> Result<Layout, LayoutError> {
    let (data, len) = match *place {
        Place::Host { address, len } => (address as u64, len as u64),
        Place::Device { address, len, .. } => (address, len),
    };
    let (dl_type, raw) = dl_dtype(dtype);
    let shape: Vec<u64> = if raw { vec![len] } else { shape.to_vec() };
    let elements = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| LayoutError(format!("shape {shape:?} overflows")))?;
    let bytes = elements
        .checked_mul(u64::from(dl_type.bits) / 8)
        .ok_or_else(|| LayoutError(format!("shape {shape:?} overflows")))?;
    if bytes != len {
        return Err(LayoutError(format!(
            "shape {shape:?} of {} is {bytes} bytes, the tensor has {len}",
            dtype.name()
        )));
    }
    let to_i64 =
        |v: u64| i64::try_from(v).map_err(|_| LayoutError(format!("dimension {v} out of range")));
    let mut strides = vec![0i64; shape.len()];
    let mut step = 1i64;
    for (stride, &dim) in strides.iter_mut().zip(&shape).rev() {
        *stride = step;
        step = step
            .checked_mul(to_i64(dim)?)
            .ok_or_else(|| LayoutError(format!("shape {shape:?} overflows")))?;
    }
    let shape = shape
        .iter()
        .map(|&d| to_i64(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Layout {
        // An empty tensor's data pointer is NULL, as dlpack.h asks.
        data: if len == 0 { 0 } else { data },
        device: dl_device(place)?,
        dtype: dl_type,
        shape,
        strides,
    })
}

/// The `DLTensor` over `layout`, pointing into `holder`'s arrays, and the
/// holder as an owned raw `manager_ctx` (freed by [`free_holder`]).
fn tensor_and_context(
    layout: Layout,
    keep: Box<dyn Send>,
) -> Result<(DLTensor, *mut c_void), LayoutError> {
    let ndim = i32::try_from(layout.shape.len())
        .map_err(|_| LayoutError(format!("{} dimensions", layout.shape.len())))?;
    let data = usize::try_from(layout.data)
        .map_err(|_| LayoutError("the address does not fit a pointer".to_owned()))?;
    let mut holder = Box::new(Holder::new(layout.shape, layout.strides, keep));
    // The arrays' heap buffers do not move with the box; pointers taken
    // through `&mut` may be handed out for the holder's lifetime.
    let (shape, strides) = if ndim == 0 {
        (std::ptr::null_mut(), std::ptr::null_mut())
    } else {
        (holder.shape.as_mut_ptr(), holder.strides.as_mut_ptr())
    };
    let tensor = DLTensor {
        data: data as *mut c_void,
        device: layout.device,
        ndim,
        dtype: layout.dtype,
        shape,
        strides,
        byte_offset: 0,
    };
    Ok((tensor, Box::into_raw(holder).cast()))
}

/// A heap-allocated legacy managed tensor over `layout`, owning `keep`.
/// Freed by its deleter, once.
pub(crate) fn managed_legacy(
    layout: Layout,
    keep: Box<dyn Send>,
) -> Result<*mut DLManagedTensor, LayoutError> {
    let (dl_tensor, manager_ctx) = tensor_and_context(layout, keep)?;
    Ok(Box::into_raw(Box::new(DLManagedTensor {
        dl_tensor,
        manager_ctx,
        deleter: Some(delete_legacy),
    })))
}

/// A heap-allocated versioned (1.0) managed tensor over `layout`, read-only,
/// owning `keep`. Freed by its deleter, once.
pub(crate) fn managed_versioned(
    layout: Layout,
    keep: Box<dyn Send>,
) -> Result<*mut DLManagedTensorVersioned, LayoutError> {
    let (dl_tensor, manager_ctx) = tensor_and_context(layout, keep)?;
    Ok(Box::into_raw(Box::new(DLManagedTensorVersioned {
        version: DLPACK_VERSION,
        manager_ctx,
        deleter: Some(delete_versioned),
        flags: DLPACK_FLAG_BITMASK_READ_ONLY,
        dl_tensor,
    })))
}

/// Frees a [`Holder`] made by [`tensor_and_context`].
///
/// # Safety
/// `ctx` is null or a `manager_ctx` made by [`tensor_and_context`] that
/// has not been freed.
unsafe fn free_holder(ctx: *mut c_void) {
    if !ctx.is_null() {
        // SAFETY: per this function's contract, `ctx` came from
        // `Box::into_raw(Box<Holder>)` and is freed here once.
        drop(unsafe { Box::from_raw(ctx.cast::<Holder>()) });
    }
}

/// The legacy managed tensor's deleter: frees it, its holder, and so
/// releases the keep.
///
/// # Safety
/// `managed` is null or a pointer from [`managed_legacy`] not yet deleted;
/// the DLPack protocol calls a deleter once.
unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: per the contract, `managed` came from `Box::into_raw` in
    // `managed_legacy` and is deleted once; its `manager_ctx` is the holder
    // made with it.
    unsafe {
        let managed = Box::from_raw(managed);
        free_holder(managed.manager_ctx);
    }
}

/// The versioned managed tensor's deleter (as [`delete_legacy`]).
///
/// # Safety
/// `managed` is null or a pointer from [`managed_versioned`] not yet
/// deleted.
unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: as in `delete_legacy`, for `managed_versioned`'s allocation.
    unsafe {
        let managed = Box::from_raw(managed);
        free_holder(managed.manager_ctx);
    }
}

/// Destructor of a `"dltensor"` capsule: deletes the managed tensor unless
/// a consumer took it (and renamed the capsule `"used_dltensor"`).
///
/// # Safety
/// Called by CPython with a capsule made by [`capsule`].
unsafe extern "C" fn legacy_capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: `capsule` is the live capsule being destroyed; `IsValid` with
    // our name is true only while it is unconsumed (a consumer renames it),
    // and then its pointer is our managed tensor, not yet deleted.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY_NAME.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, LEGACY_NAME.as_ptr());
            delete_legacy(managed.cast());
        }
    }
}

/// Destructor of a `"dltensor_versioned"` capsule (as
/// [`legacy_capsule_destructor`]).
///
/// # Safety
/// Called by CPython with a capsule made by [`capsule`].
unsafe extern "C" fn versioned_capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `legacy_capsule_destructor`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED_NAME.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, VERSIONED_NAME.as_ptr());
            delete_versioned(managed.cast());
        }
    }
}

/// Which capsule `__dlpack__` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `"dltensor"`: `DLManagedTensor`, no flags (it cannot say read-only).
    Legacy,
    /// `"dltensor_versioned"`: `DLManagedTensorVersioned` 1.0, read-only.
    Versioned,
}

impl Protocol {
    /// The array API standard's rule: a versioned capsule when the
    /// consumer's `max_version` is at least 1.0, the legacy one otherwise.
    pub(crate) fn for_max_version(max_version: Option<(i64, i64)>) -> Self {
        match max_version {
            Some((major, _)) if major >= i64::from(DLPACK_VERSION.major) => Self::Versioned,
            _ => Self::Legacy,
        }
    }
}

/// A new, unconsumed capsule owning a managed tensor over `layout` that
/// owns `keep`.
pub(crate) fn capsule<'py>(
    py: Python<'py>,
    layout: Layout,
    keep: Box<dyn Send>,
    protocol: Protocol,
) -> PyResult<Bound<'py, PyAny>> {
    let refused = |e: LayoutError| PyBufferError::new_err(e.0);
    match protocol {
        Protocol::Legacy => {
            let managed = managed_legacy(layout, keep).map_err(refused)?;
            // SAFETY: `managed` is a live heap pointer of ours; the name is a
            // static C string (a capsule keeps the pointer, not a copy); the
            // destructor matches the name. On failure no capsule owns
            // `managed`, so it is deleted here, once.
            unsafe {
                let raw = ffi::PyCapsule_New(
                    managed.cast(),
                    LEGACY_NAME.as_ptr(),
                    Some(legacy_capsule_destructor),
                );
                Bound::from_owned_ptr_or_err(py, raw).inspect_err(|_| delete_legacy(managed))
            }
        }
        Protocol::Versioned => {
            let managed = managed_versioned(layout, keep).map_err(refused)?;
            // SAFETY: as for the legacy capsule above.
            unsafe {
                let raw = ffi::PyCapsule_New(
                    managed.cast(),
                    VERSIONED_NAME.as_ptr(),
                    Some(versioned_capsule_destructor),
                );
                Bound::from_owned_ptr_or_err(py, raw).inspect_err(|_| delete_versioned(managed))
            }
        }
    }
}

/// Checks `__dlpack__`'s keyword arguments against the tensor's device, as
/// the array API standard asks: `copy=True` refused (`BufferError`: a copy
/// would leave the seal), a `dl_device` other than the tensor's own refused
/// (`BufferError`), `stream` `None` on the CPU (`ValueError` otherwise) and
/// `None` or an integer other than 0 on CUDA (the standard disallows 0).
pub(crate) fn check_request(
    device: DLDevice,
    stream: Option<&Bound<'_, PyAny>>,
    dl_device: Option<(i64, i64)>,
    copy: Option<bool>,
) -> PyResult<()> {
    if copy == Some(true) {
        return Err(PyBufferError::new_err(
            "copy=True: a copy would leave the seal; the tensor is exported only as a \
             zero-copy view of the sealed memory",
        ));
    }
    if let Some((kind, id)) = dl_device {
        if (kind, id) != (i64::from(device.device_type), i64::from(device.device_id)) {
            return Err(PyBufferError::new_err(format!(
                "dl_device=({kind}, {id}): the tensor lies on ({}, {}) and is not copied \
                 to another device",
                device.device_type, device.device_id
            )));
        }
    }
    let Some(stream) = stream.filter(|s| !s.is_none()) else {
        return Ok(());
    };
    if device.device_type == KDL_CPU {
        return Err(PyValueError::new_err(
            "stream: only None for memory on the CPU",
        ));
    }
    let value: i64 = stream
        .extract()
        .map_err(|_| PyTypeError::new_err("stream: an integer (a CUDA stream) or None"))?;
    if value == 0 {
        return Err(PyValueError::new_err(
            "stream=0 is ambiguous on CUDA (the array API standard disallows it): \
             use 1 for the legacy default stream, 2 for the per-thread one",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use std::mem::{offset_of, size_of};
    use std::sync::Arc;

    use super::*;
    use crate::worker::DeviceMemory;

    #[test]
    fn structs_have_dlpack_h_layout() {
        // dlpack.h v1.0 on a 64-bit target: pointers of 8 bytes, the C enum
        // DLDeviceType of 4.
        assert_eq!(size_of::<DLPackVersion>(), 8);
        assert_eq!(offset_of!(DLPackVersion, minor), 4);
        assert_eq!(size_of::<DLDevice>(), 8);
        assert_eq!(offset_of!(DLDevice, device_id), 4);
        assert_eq!(size_of::<DLDataType>(), 4);
        assert_eq!(
            (
                offset_of!(DLDataType, code),
                offset_of!(DLDataType, bits),
                offset_of!(DLDataType, lanes)
            ),
            (0, 1, 2)
        );
        assert_eq!(size_of::<DLTensor>(), 48);
        assert_eq!(
            [
                offset_of!(DLTensor, data),
                offset_of!(DLTensor, device),
                offset_of!(DLTensor, ndim),
                offset_of!(DLTensor, dtype),
                offset_of!(DLTensor, shape),
                offset_of!(DLTensor, strides),
                offset_of!(DLTensor, byte_offset),
            ],
            [0, 8, 16, 20, 24, 32, 40]
        );
        assert_eq!(size_of::<DLManagedTensor>(), 64);
        assert_eq!(
            [
                offset_of!(DLManagedTensor, dl_tensor),
                offset_of!(DLManagedTensor, manager_ctx),
                offset_of!(DLManagedTensor, deleter),
            ],
            [0, 48, 56]
        );
        assert_eq!(size_of::<DLManagedTensorVersioned>(), 80);
        assert_eq!(
            [
                offset_of!(DLManagedTensorVersioned, version),
                offset_of!(DLManagedTensorVersioned, manager_ctx),
                offset_of!(DLManagedTensorVersioned, deleter),
                offset_of!(DLManagedTensorVersioned, flags),
                offset_of!(DLManagedTensorVersioned, dl_tensor),
            ],
            [0, 8, 16, 24, 32]
        );
        // An `Option` of a function pointer is a nullable C function pointer.
        assert_eq!(
            size_of::<Option<unsafe extern "C" fn(*mut DLManagedTensor)>>(),
            8
        );
    }

    #[test]
    fn dtypes_map_to_dlpack_codes() {
        for (dtype, want) in [
            (Dtype::F32, ((KDL_FLOAT, 32), false)),
            (Dtype::F16, ((KDL_FLOAT, 16), false)),
            (Dtype::F64, ((KDL_FLOAT, 64), false)),
            (Dtype::BF16, ((KDL_BFLOAT, 16), false)),
            (Dtype::I8, ((KDL_INT, 8), false)),
            (Dtype::I64, ((KDL_INT, 64), false)),
            (Dtype::U8, ((KDL_UINT, 8), false)),
            (Dtype::U32, ((KDL_UINT, 32), false)),
            (Dtype::Bool, ((KDL_BOOL, 8), false)),
            (Dtype::C64, ((KDL_COMPLEX, 64), false)),
            (Dtype::F8_E4M3, ((KDL_UINT, 8), false)),
            (Dtype::F4, ((KDL_UINT, 8), true)),
            (Dtype::F6_E2M3, ((KDL_UINT, 8), true)),
            (Dtype::Q8_0, ((KDL_UINT, 8), true)),
            (Dtype::Q4_K, ((KDL_UINT, 8), true)),
            (Dtype::MXFP4, ((KDL_UINT, 8), true)),
        ] {
            let (t, raw) = dl_dtype(dtype);
            assert_eq!(((t.code, t.bits), raw), want, "{dtype}");
            assert_eq!(t.lanes, 1);
            // A typed element is as wide as the dtype's element.
            if !raw && dtype.block_elements() == 1 {
                assert_eq!(u64::from(t.bits), dtype.block_bits(), "{dtype}");
            }
        }
    }

    #[test]
    fn host_layouts_are_row_major_in_elements() {
        let place = Place::Host {
            address: 0x1000,
            len: 16 * 8 * 4,
        };
        let l = layout(&place, Dtype::F32, &[16, 8]).unwrap();
        assert_eq!(
            l.device,
            DLDevice {
                device_type: KDL_CPU,
                device_id: 0
            }
        );
        assert_eq!(
            (l.shape.clone(), l.strides.clone()),
            (vec![16, 8], vec![8, 1])
        );
        assert_eq!(l.data, 0x1000);
        let l = layout(
            &Place::Host {
                address: 8,
                len: 2 * 3 * 4 * 2,
            },
            Dtype::BF16,
            &[2, 3, 4],
        )
        .unwrap();
        assert_eq!((l.shape, l.strides), (vec![2, 3, 4], vec![12, 4, 1]));
        // A scalar: no dimensions.
        let l = layout(&Place::Host { address: 8, len: 4 }, Dtype::F32, &[]).unwrap();
        assert!(l.shape.is_empty() && l.strides.is_empty());
        // Quantized blocks: the raw bytes, one dimension.
        let l = layout(
            &Place::Host {
                address: 8,
                len: 68,
            },
            Dtype::Q8_0,
            &[64],
        )
        .unwrap();
        assert_eq!(
            (l.dtype, l.shape, l.strides),
            (dl(KDL_UINT, 8), vec![68], vec![1])
        );
        // A shape that does not match the bytes is refused, not trusted.
        let e = layout(
            &Place::Host {
                address: 8,
                len: 10,
            },
            Dtype::F32,
            &[3],
        )
        .unwrap_err();
        assert!(e.0.contains("12 bytes, the tensor has 10"), "{e:?}");
        let e = layout(&place, Dtype::F32, &[u64::MAX, 2]).unwrap_err();
        assert!(e.0.contains("overflows"), "{e:?}");
        // An empty tensor's data pointer is NULL.
        let l = layout(&Place::Host { address: 8, len: 0 }, Dtype::F16, &[0, 4]).unwrap();
        assert_eq!((l.data, l.strides), (0, vec![4, 1]));
    }

    #[test]
    fn cuda_memory_is_exported_as_a_cuda_device_with_its_ordinal() {
        eprintln!(
            "NOTE: the CUDA DLPack export is not exercised on a GPU by this test (no GPU in \
             this run): its layout and device logic are checked on a constructed DeviceMemory"
        );
        let memory = DeviceMemory::new(0x7f00_0000_0100, 4096, 3);
        let place = Place::of_device_memory(memory.slice(256, 1024).unwrap());
        let l = layout(&place, Dtype::F16, &[8, 64]).unwrap();
        assert_eq!(
            l.device,
            DLDevice {
                device_type: KDL_CUDA,
                device_id: 3
            }
        );
        assert_eq!(l.data, 0x7f00_0000_0200);
        assert_eq!(
            (l.dtype, l.shape.clone(), l.strides.clone()),
            (dl(KDL_FLOAT, 16), vec![8, 64], vec![64, 1])
        );
        // The versioned managed tensor carries all of it, read-only.
        let keep = Arc::new(());
        let managed = managed_versioned(l, Box::new(Arc::clone(&keep))).unwrap();
        {
            // SAFETY: `managed` is a live pointer from `managed_versioned`.
            let m = unsafe { &*managed };
            assert_eq!(m.version, DLPackVersion { major: 1, minor: 0 });
            assert_eq!(m.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
            let t = &m.dl_tensor;
            assert_eq!(
                (t.device.device_type, t.device.device_id, t.ndim),
                (KDL_CUDA, 3, 2)
            );
            assert_eq!(t.data as usize, 0x7f00_0000_0200);
            assert_eq!(t.byte_offset, 0);
            // SAFETY: `shape` and `strides` point at `ndim` elements each,
            // owned by the live holder.
            let (shape, strides) = unsafe {
                (
                    std::slice::from_raw_parts(t.shape, 2),
                    std::slice::from_raw_parts(t.strides, 2),
                )
            };
            assert_eq!((shape, strides), (&[8i64, 64][..], &[64i64, 1][..]));
        }
        assert_eq!(
            Arc::strong_count(&keep),
            2,
            "the export keeps the memory alive"
        );
        // SAFETY: `managed` is still live (not yet deleted).
        let deleter = unsafe { (*managed).deleter }.unwrap();
        // SAFETY: deleting once, as a consumer would.
        unsafe { deleter(managed) };
        assert_eq!(
            Arc::strong_count(&keep),
            1,
            "the deleter released the memory"
        );
        // An ordinal beyond what DLPack's int32 holds is refused.
        let far = Place::Device {
            address: 1,
            len: 0,
            ordinal: u32::MAX,
        };
        assert!(dl_device(&far).is_err());
    }

    #[test]
    fn the_legacy_deleter_frees_the_holder_and_releases_the_keep() {
        let keep = Arc::new(());
        let place = Place::Host {
            address: 0x2000,
            len: 4 * 2,
        };
        let l = layout(&place, Dtype::I32, &[2]).unwrap();
        let managed = managed_legacy(l, Box::new(Arc::clone(&keep))).unwrap();
        assert_eq!(Arc::strong_count(&keep), 2);
        // SAFETY: `managed` is live; it is deleted once, through its deleter.
        unsafe {
            assert_eq!((*managed).dl_tensor.ndim, 1);
            assert_eq!(*(*managed).dl_tensor.shape, 2);
            let deleter = (*managed).deleter.unwrap();
            deleter(managed);
        }
        assert_eq!(Arc::strong_count(&keep), 1);
        // A null pointer is ignored, as dlpack.h allows.
        // SAFETY: null is within both deleters' contracts.
        unsafe {
            delete_legacy(std::ptr::null_mut());
            delete_versioned(std::ptr::null_mut());
        }
    }

    #[test]
    fn max_version_chooses_the_capsule() {
        assert_eq!(Protocol::for_max_version(None), Protocol::Legacy);
        assert_eq!(Protocol::for_max_version(Some((0, 8))), Protocol::Legacy);
        assert_eq!(Protocol::for_max_version(Some((1, 0))), Protocol::Versioned);
        assert_eq!(Protocol::for_max_version(Some((1, 3))), Protocol::Versioned);
        assert_eq!(Protocol::for_max_version(Some((2, 0))), Protocol::Versioned);
    }
}
