//! What a [`CudaDevice`](super::CudaDevice) shares with every buffer it
//! allocated: its context and the leaf-hashing kernel, compiled with NVRTC on
//! first use.

use super::kernel::{SHA256_LEAVES_FN, SHA256_LEAVES_SRC};
use super::{call, guarded, nvrtc_present};
use crate::DeviceError;
use cudarc::driver::{sys, CudaContext, CudaFunction};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// State shared by a device and every buffer it allocated: the context and the
/// lazily compiled hashing kernel.
pub(super) struct DeviceShared {
    pub(super) index: u32,
    pub(super) ctx: Arc<CudaContext>,
    /// The leaf-hashing kernel, compiled at first use. A failure is cached too,
    /// so a machine without NVRTC does not retry the compile on every call.
    hasher: OnceLock<Result<CudaFunction, DeviceError>>,
}

impl DeviceShared {
    /// A device's shared state, its kernel not compiled yet.
    pub(super) fn new(index: u32, ctx: Arc<CudaContext>) -> Self {
        Self {
            index,
            ctx,
            hasher: OnceLock::new(),
        }
    }

    /// The leaf-hashing kernel, compiled and loaded on first use.
    pub(super) fn hasher(&self) -> Result<&CudaFunction, DeviceError> {
        self.hasher
            .get_or_init(|| compile_hasher(&self.ctx))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl fmt::Debug for DeviceShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceShared")
            .field("index", &self.index)
            .field("hasher_compiled", &matches!(self.hasher.get(), Some(Ok(_))))
            .finish_non_exhaustive()
    }
}

/// Operation name used when NVRTC is missing.
const NO_NVRTC: &str =
    "on-device leaf hashing without libnvrtc (install the CUDA runtime compiler library)";

/// Operation name used when the driver cannot load the PTX NVRTC produced.
const PTX_NOT_LOADABLE: &str =
    "on-device leaf hashing with a driver older than NVRTC (upgrade the driver or install the NVRTC of the driver's CUDA version)";

/// Whether a `cuModuleLoadData` failure means this driver cannot load PTX from
/// this NVRTC at all (as opposed to a fault worth reporting as an error).
pub(super) fn driver_cannot_load_ptx(code: sys::CUresult) -> bool {
    use sys::CUresult::{
        CUDA_ERROR_INVALID_PTX, CUDA_ERROR_JIT_COMPILER_NOT_FOUND, CUDA_ERROR_NO_BINARY_FOR_GPU,
        CUDA_ERROR_UNSUPPORTED_PTX_VERSION,
    };
    matches!(
        code,
        CUDA_ERROR_UNSUPPORTED_PTX_VERSION
            | CUDA_ERROR_INVALID_PTX
            | CUDA_ERROR_NO_BINARY_FOR_GPU
            | CUDA_ERROR_JIT_COMPILER_NOT_FOUND
    )
}

/// Compiles the leaf-hashing kernel for this device with NVRTC and loads it.
fn compile_hasher(ctx: &Arc<CudaContext>) -> Result<CudaFunction, DeviceError> {
    if !nvrtc_present() {
        tracing::warn!("libnvrtc not found: on-device leaf hashing is unavailable");
        return Err(DeviceError::Unsupported {
            operation: NO_NVRTC,
        });
    }
    let (major, minor) = call("cuDeviceGetAttribute", || ctx.compute_capability())?;
    // Compile for the device's own virtual architecture; if this NVRTC does not
    // know it, fall back to NVRTC's default (the driver JITs PTX forward).
    let ptx = match compile_ptx(native_options(major, minor)) {
        Ok(ptx) => ptx,
        Err(err) => {
            tracing::warn!(major, minor, error = %err, "NVRTC rejected the native architecture; retrying with its default");
            compile_ptx(CompileOptions::default())?
        }
    };
    let module = match guarded("cuModuleLoadData", || ctx.load_module(ptx))? {
        Ok(module) => module,
        Err(err) if driver_cannot_load_ptx(err.0) => {
            // NVRTC newer than the driver (its PTX ISA is too recent), or a
            // driver without its JIT: an installation mismatch, not a kernel
            // bug. Verification stays correct by reading back to the host, and
            // `VerifyReport::hash_path` says so; the GPU test run still fails
            // on it (it requires on-device hashing when NVRTC is present).
            tracing::warn!(
                code = ?err.0,
                "the CUDA driver cannot load the leaf kernel NVRTC compiled (NVRTC newer than the driver?): on-device leaf hashing is unavailable, verification reads back to the host"
            );
            return Err(DeviceError::Unsupported {
                operation: PTX_NOT_LOADABLE,
            });
        }
        Err(err) => return Err(super::driver_error("cuModuleLoadData", err)),
    };
    let function = call("cuModuleGetFunction", || {
        module.load_function(SHA256_LEAVES_FN)
    })?;
    tracing::info!(major, minor, "compiled the on-device SHA-256 leaf kernel");
    Ok(function)
}

/// NVRTC options for a device of compute capability `major.minor`: its own
/// virtual architecture (`--gpu-architecture=compute_90` for an H100 or H200).
pub(super) fn native_options(major: i32, minor: i32) -> CompileOptions {
    CompileOptions {
        options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
        ..CompileOptions::default()
    }
}

/// Compiles [`SHA256_LEAVES_SRC`] to PTX (needs NVRTC, not a device).
pub(super) fn compile_ptx(options: CompileOptions) -> Result<Ptx, DeviceError> {
    let result = guarded("nvrtcCompileProgram", || {
        cudarc::nvrtc::compile_ptx_with_opts(SHA256_LEAVES_SRC, options)
    })?;
    result.map_err(|err| {
        let (call, code) = match &err {
            CompileError::CreationError(e) => ("nvrtcCreateProgram", format!("{:?}", e.0)),
            CompileError::CompileError { nvrtc, log, .. } => {
                // The log is about our own kernel source: safe to record in full.
                tracing::error!(log = %log.to_string_lossy(), "NVRTC failed to compile the leaf kernel");
                ("nvrtcCompileProgram", format!("{:?}", nvrtc.0))
            }
            CompileError::GetLogError(e) => ("nvrtcGetProgramLog", format!("{:?}", e.0)),
            CompileError::GetPtxError(e) => ("nvrtcGetPTX", format!("{:?}", e.0)),
            CompileError::DestroyError(e) => ("nvrtcDestroyProgram", format!("{:?}", e.0)),
        };
        DeviceError::Driver { call, code }
    })
}
