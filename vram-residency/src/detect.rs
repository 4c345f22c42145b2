//! Device detection: CUDA devices when built with `cuda` and a driver and device
//! are present; otherwise (feature `mock`) the mock. The one place devices are
//! found: `vram-worker`'s device selection (which every binary builds its
//! worker with) calls it and gets the concrete devices back, so a caller that
//! needs more than the [`Device`] trait (the CLI's demo, which corrupts memory
//! on purpose) keeps them; the manager takes the devices it is given.
//!
//! Detection says nothing itself: the worker announces the mock, loudly, in
//! its own words.

use crate::VramError;
use std::sync::Arc;
use vram_core::{Device, DeviceError};

/// Environment variable that forces the mock device (`1`).
pub const FORCE_MOCK_ENV: &str = "VRAM_RESIDENCY_FORCE_MOCK";

/// Capacity of the fallback mock device.
#[cfg(feature = "mock")]
pub const FALLBACK_MOCK_CAPACITY: u64 = vram_mock::DEFAULT_CAPACITY;

/// What [`detect`] or [`detect_cuda`] found: the concrete devices.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Detected {
    /// CUDA devices, index = position.
    #[cfg(feature = "cuda")]
    Cuda(Vec<Arc<vram_core::cuda::CudaDevice>>),
    /// The mock device (host memory).
    #[cfg(feature = "mock")]
    Mock {
        /// The device.
        device: Arc<vram_mock::MockDevice>,
        /// Why the mock is in use when it stands in for CUDA devices that
        /// could not be used (`None` when it was asked for by name).
        fallback_reason: Option<String>,
    },
}

impl Detected {
    /// The mock device of [`FALLBACK_MOCK_CAPACITY`], asked for by name.
    #[cfg(feature = "mock")]
    pub fn mock() -> Self {
        Self::Mock {
            device: vram_mock::MockDevice::new(0, FALLBACK_MOCK_CAPACITY),
            fallback_reason: None,
        }
    }

    /// The devices as the manager takes them, index = position.
    pub fn devices(&self) -> Vec<Arc<dyn Device>> {
        match self {
            #[cfg(feature = "cuda")]
            Self::Cuda(devices) => devices
                .iter()
                .map(|d| {
                    let d: Arc<dyn Device> = d.clone();
                    d
                })
                .collect(),
            #[cfg(feature = "mock")]
            Self::Mock { device, .. } => {
                let d: Arc<dyn Device> = device.clone();
                vec![d]
            }
            #[cfg(not(any(feature = "cuda", feature = "mock")))]
            _ => Vec::new(),
        }
    }

    /// Whether these are the mock device.
    pub fn is_mock(&self) -> bool {
        match self {
            #[cfg(feature = "mock")]
            Self::Mock { .. } => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Why the mock stands in for CUDA devices, when it does.
    pub fn fallback_reason(&self) -> Option<&str> {
        match self {
            #[cfg(feature = "mock")]
            Self::Mock {
                fallback_reason, ..
            } => fallback_reason.as_deref(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// Why no CUDA device can be used, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CudaUnavailable {
    /// The driver could not be loaded or asked for its devices.
    #[error("{0}")]
    Driver(DeviceError),
    /// The driver reports no device.
    #[error("the CUDA driver reports no device")]
    NoDevice,
    /// A device could not be opened.
    #[error("{source}")]
    Open {
        /// The device index.
        device: u32,
        /// Why.
        source: DeviceError,
    },
    /// This build has no CUDA backend.
    #[error("this build has no `cuda` feature")]
    NotBuilt,
}

impl From<CudaUnavailable> for VramError {
    fn from(e: CudaUnavailable) -> Self {
        let (device, source) = match e {
            CudaUnavailable::Driver(source) => (0, source),
            CudaUnavailable::NoDevice => (0, DeviceError::NoDevice { index: 0, count: 0 }),
            CudaUnavailable::Open { device, source } => (device, source),
            CudaUnavailable::NotBuilt => (
                0,
                DeviceError::Unsupported {
                    operation: "CUDA (this build has no `cuda` feature)",
                },
            ),
        };
        VramError::Device { device, source }
    }
}

/// Finds devices: CUDA when possible, else (feature `mock`) the mock, with the
/// reason in [`Detected::fallback_reason`]. `VRAM_RESIDENCY_FORCE_MOCK=1`
/// ([`FORCE_MOCK_ENV`]) picks the mock without looking for CUDA.
///
/// # Errors
/// Only without the `mock` feature: why no CUDA device can be used.
pub fn detect() -> Result<Detected, CudaUnavailable> {
    let forced = std::env::var(FORCE_MOCK_ENV).is_ok_and(|v| v == "1");
    #[cfg(feature = "mock")]
    {
        let reason = if forced {
            format!("{FORCE_MOCK_ENV}=1")
        } else {
            match detect_cuda() {
                Ok(found) => return Ok(found),
                Err(e) => e.to_string(),
            }
        };
        Ok(Detected::Mock {
            device: vram_mock::MockDevice::new(0, FALLBACK_MOCK_CAPACITY),
            fallback_reason: Some(reason),
        })
    }
    #[cfg(not(feature = "mock"))]
    {
        // Without a mock to fall back to, forcing it finds nothing.
        if forced {
            return Err(CudaUnavailable::NotBuilt);
        }
        detect_cuda()
    }
}

/// CUDA devices only (production): fails when none can be used.
///
/// # Errors
/// Why none can be used (no driver, no device, built without `cuda`).
pub fn detect_cuda() -> Result<Detected, CudaUnavailable> {
    #[cfg(feature = "cuda")]
    {
        use vram_core::cuda::{device_count, CudaDevice};
        let count = device_count().map_err(CudaUnavailable::Driver)?;
        if count == 0 {
            return Err(CudaUnavailable::NoDevice);
        }
        let mut out = Vec::new();
        for i in 0..count {
            let d = CudaDevice::open(i)
                .map_err(|source| CudaUnavailable::Open { device: i, source })?;
            out.push(d);
        }
        Ok(Detected::Cuda(out))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(CudaUnavailable::NotBuilt)
    }
}

/// CUDA devices only, as the manager takes them (production): fails when none
/// can be used.
///
/// # Errors
/// [`VramError::Device`] naming why (no driver, no device, built without `cuda`).
pub fn cuda_devices() -> Result<Vec<Arc<dyn Device>>, VramError> {
    Ok(detect_cuda()?.devices())
}
