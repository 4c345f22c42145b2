//! Which devices a worker uses: `auto`, `mock`, `cuda` or `cuda:N`, found
//! through the facade's detection, which keeps the concrete device types so
//! that a demonstration can reach their corruption paths.

use crate::error::WorkerError;
use std::sync::Arc;
#[cfg(feature = "cuda")]
use vram_core::cuda::CudaDevice;
use vram_core::Device;
use vram_mock::MockDevice;
use vram_residency::{detect_cuda, Detected};
use vram_validation::escape_for_log;

/// A device choice (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA devices when present, else the mock (said on stderr, always).
    #[default]
    Auto,
    /// The mock, as asked.
    Mock,
    /// Every CUDA device; none is an error (a service that needs real VRAM).
    AllCuda,
    /// One CUDA device.
    Cuda(u32),
}

impl DeviceSpec {
    /// Parses `auto`, `mock`, `cuda` or `cuda:N` (N: 1 to 4 digits).
    ///
    /// # Errors
    /// [`WorkerError::UnknownDevice`] (usage) for anything else.
    pub fn parse(s: &str) -> Result<Self, WorkerError> {
        match s {
            "auto" => Ok(Self::Auto),
            "mock" => Ok(Self::Mock),
            "cuda" => Ok(Self::AllCuda),
            _ => s
                .strip_prefix("cuda:")
                .filter(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
                .map(Self::Cuda)
                .ok_or_else(|| WorkerError::UnknownDevice {
                    shown: escape_for_log(s, 40),
                }),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = WorkerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The devices a worker works on: what detection found (the concrete
/// devices, which a demonstration corrupts), and the one to use.
pub struct DeviceSelection {
    found: Detected,
    devices: Vec<Arc<dyn Device>>,
    target: u32,
}

impl std::fmt::Debug for DeviceSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSelection")
            .field("kind", &self.kind())
            .field("devices", &self.devices.len())
            .field("target", &self.target)
            .finish()
    }
}

impl DeviceSelection {
    fn new(found: Detected) -> Self {
        Self {
            devices: found.devices(),
            found,
            target: 0,
        }
    }

    /// Resolves a choice to devices through the facade's detection. `auto`
    /// falls back to the mock (said by [`Self::announce`]).
    ///
    /// # Errors
    /// Environment errors: no CUDA device where one is required, `cuda:N`
    /// beyond the devices found.
    pub fn select(spec: DeviceSpec) -> Result<Self, WorkerError> {
        match spec {
            DeviceSpec::Mock => Ok(Self::new(Detected::mock())),
            DeviceSpec::Auto => {
                vram_residency::detect()
                    .map(Self::new)
                    .map_err(|reason| WorkerError::NoDevice {
                        reason: reason.to_string(),
                    })
            }
            DeviceSpec::AllCuda => {
                detect_cuda()
                    .map(Self::new)
                    .map_err(|reason| WorkerError::CudaRequired {
                        reason: reason.to_string(),
                    })
            }
            DeviceSpec::Cuda(index) => {
                let mut sel =
                    detect_cuda()
                        .map(Self::new)
                        .map_err(|reason| WorkerError::NoDevice {
                            reason: reason.to_string(),
                        })?;
                let count = u32::try_from(sel.devices.len()).unwrap_or(u32::MAX);
                if index >= count {
                    return Err(WorkerError::NoSuchDevice { index, count });
                }
                sel.target = index;
                Ok(sel)
            }
        }
    }

    /// All devices, index = position.
    #[must_use]
    pub fn devices(&self) -> &[Arc<dyn Device>] {
        &self.devices
    }

    /// The index of the device to use.
    #[must_use]
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Why the mock stands in for CUDA devices, when it does.
    #[must_use]
    pub fn mock_reason(&self) -> Option<&str> {
        self.found.fallback_reason()
    }

    /// Whether the mock is in use.
    #[must_use]
    pub fn is_mock(&self) -> bool {
        self.found.is_mock()
    }

    /// The mock device, when it is in use.
    #[must_use]
    pub fn mock_device(&self) -> Option<&Arc<MockDevice>> {
        match &self.found {
            Detected::Mock { device, .. } => Some(device),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The target CUDA device, when CUDA devices are in use.
    #[cfg(feature = "cuda")]
    #[must_use]
    pub fn cuda_device(&self) -> Option<&Arc<CudaDevice>> {
        match &self.found {
            Detected::Cuda(devices) => usize::try_from(self.target)
                .ok()
                .and_then(|i| devices.get(i)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// `cuda` or `mock`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        if self.is_mock() {
            "mock"
        } else {
            "cuda"
        }
    }

    /// Says once that the mock is in use, on stderr. A fallback (`auto`
    /// found no CUDA device) is said even when `quiet`: a run must never use
    /// host memory in silence. A mock asked for by name is said unless
    /// `quiet`.
    // The operator's terminal, whatever the binary's log level: a worker on
    // host memory is never silent.
    #[allow(clippy::print_stderr)]
    pub fn announce(&self, quiet: bool) {
        if let Some(reason) = self.mock_reason() {
            eprintln!(
                "vram: NOTE: no CUDA device found ({}); using the MOCK device (host memory). \
                 Nothing is in GPU memory; use --device cuda to require a GPU.",
                escape_for_log(reason, 300)
            );
        } else if self.is_mock() && !quiet {
            eprintln!("vram: note: using the MOCK device (host memory), as asked; nothing is in GPU memory.");
        }
    }

    /// Flips bits (`mask`) of one byte inside the most recent live
    /// allocation, behind the seal's back: a demonstration's corruption (the
    /// mock; CUDA with the `demo-cuda` feature).
    ///
    /// # Errors
    /// [`WorkerError::Corruption`] when there is nothing to corrupt or the
    /// device offers no corruption path.
    pub fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), WorkerError> {
        let failed = |e: &dyn std::fmt::Display| WorkerError::Corruption {
            reason: format!("could not corrupt device memory: {e}"),
        };
        if let Some(device) = self.mock_device() {
            let id =
                device
                    .live_buffers()
                    .last()
                    .copied()
                    .ok_or_else(|| WorkerError::Corruption {
                        reason: "no live allocation to corrupt".to_owned(),
                    })?;
            return device.flip_bits(id, offset, mask).map_err(|e| failed(&e));
        }
        #[cfg(feature = "demo-cuda")]
        if let Some(dev) = self.cuda_device() {
            return dev
                .corrupt_one_byte_for_demo(offset, mask)
                .map_err(|e| failed(&e));
        }
        let _ = (offset, mask, &failed);
        Err(WorkerError::Corruption {
            reason: "this device offers no corruption path".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_others_are_usage_errors() {
        assert_eq!(DeviceSpec::parse("auto").unwrap(), DeviceSpec::Auto);
        assert_eq!(DeviceSpec::parse("mock").unwrap(), DeviceSpec::Mock);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::AllCuda);
        assert_eq!(DeviceSpec::parse("cuda:0").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(
            DeviceSpec::parse("cuda:9999").unwrap(),
            DeviceSpec::Cuda(9999)
        );
        for bad in [
            "",
            "gpu",
            "cuda:",
            "cuda:-1",
            "cuda:10000",
            "cuda:1x",
            "CUDA",
            "mock ",
        ] {
            let e = DeviceSpec::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(e.to_string().starts_with("unknown device `"), "{e}");
        }
        let e = DeviceSpec::parse("cuda\u{1b}[2J").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn the_mock_is_selected_by_name_and_can_be_corrupted() {
        let sel = DeviceSelection::select(DeviceSpec::Mock).unwrap();
        assert_eq!(
            (sel.kind(), sel.target(), sel.devices().len()),
            ("mock", 0, 1)
        );
        assert!(sel.mock_reason().is_none());
        // Nothing allocated: nothing to corrupt, said so.
        let e = sel.corrupt_latest(0, 1).unwrap_err();
        assert_eq!(e.to_string(), "no live allocation to corrupt");
    }
}
