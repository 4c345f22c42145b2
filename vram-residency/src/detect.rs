//! Device detection: CUDA devices when built with `cuda` and a driver and device
//! are present; otherwise the mock, with one loud warning.

use crate::VramError;
use std::sync::Arc;
use vram_core::Device;
use vram_mock::MockDevice;

/// Environment variable that forces the mock device (`1`).
pub const FORCE_MOCK_ENV: &str = "VRAM_RESIDENCY_FORCE_MOCK";

/// Capacity of the fallback mock device.
pub const FALLBACK_MOCK_CAPACITY: u64 = vram_mock::DEFAULT_CAPACITY;

/// What [`detect`] found.
#[derive(Debug, Clone)]
pub struct Detected {
    /// The devices to use, index = position.
    pub devices: Vec<Arc<dyn Device>>,
    /// True when these are mock devices.
    pub mock: bool,
    /// Why the mock is in use (empty when it is not).
    pub reason: String,
}

/// Finds devices: CUDA when possible, else the mock (with a loud warning).
pub fn detect() -> Detected {
    let forced = std::env::var(FORCE_MOCK_ENV).is_ok_and(|v| v == "1");
    let reason = if forced {
        format!("{FORCE_MOCK_ENV}=1")
    } else {
        match cuda_devices() {
            Ok(devices) => {
                return Detected {
                    devices,
                    mock: false,
                    reason: String::new(),
                }
            }
            Err(e) => e.to_string(),
        }
    };
    tracing::warn!(
        reason = %reason,
        "NO CUDA DEVICE FOUND: using the MOCK device (host memory). Seals are not in VRAM."
    );
    let mock: Arc<dyn Device> = MockDevice::new(0, FALLBACK_MOCK_CAPACITY);
    Detected {
        devices: vec![mock],
        mock: true,
        reason,
    }
}

/// CUDA devices only (production): fails when none can be used.
///
/// # Errors
/// [`VramError::Device`] naming why (no driver, no device, built without `cuda`).
pub fn cuda_devices() -> Result<Vec<Arc<dyn Device>>, VramError> {
    #[cfg(feature = "cuda")]
    {
        let count = vram_core::cuda::device_count()
            .map_err(|source| VramError::Device { device: 0, source })?;
        if count == 0 {
            return Err(VramError::Device {
                device: 0,
                source: vram_core::DeviceError::NoDevice { index: 0, count: 0 },
            });
        }
        let mut out: Vec<Arc<dyn Device>> = Vec::new();
        for i in 0..count {
            let d = vram_core::cuda::CudaDevice::open(i)
                .map_err(|source| VramError::Device { device: i, source })?;
            out.push(d);
        }
        Ok(out)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(VramError::Device {
            device: 0,
            source: vram_core::DeviceError::Unsupported {
                operation: "CUDA (this build has no `cuda` feature)",
            },
        })
    }
}
