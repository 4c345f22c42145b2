//! Device selection for the CLI: `auto`, `mock`, `cuda` or `cuda:N`, through
//! the facade's detection, which keeps the concrete device types so `demo`
//! can reach their corruption paths.

use crate::exit::CliError;
use std::sync::Arc;
#[cfg(feature = "cuda")]
use vram_core::cuda::CudaDevice;
use vram_core::Device;
use vram_mock::MockDevice;
use vram_residency::{detect_cuda, Detected};
use vram_validation::escape_for_log;

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA devices when present, else the mock (said on stderr, always).
    Auto,
    /// The mock, as asked.
    Mock,
    /// Every CUDA device; none is an error (a service that needs real VRAM).
    AllCuda,
    /// One CUDA device.
    Cuda(u32),
}

/// Parses `auto`, `mock`, `cuda` or `cuda:N`.
///
/// # Errors
/// A usage error ([`USAGE`](crate::exit::USAGE)) naming the flag and what it takes.
pub fn parse_spec(s: &str) -> Result<DeviceSpec, CliError> {
    match s {
        "auto" => Ok(DeviceSpec::Auto),
        "mock" => Ok(DeviceSpec::Mock),
        "cuda" => Ok(DeviceSpec::AllCuda),
        _ => {
            let shown = escape_for_log(s, 40);
            let n = s
                .strip_prefix("cuda:")
                .filter(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "unknown device `{shown}`: use auto, mock, cuda or cuda:N"
                    ))
                })?;
            Ok(DeviceSpec::Cuda(n))
        }
    }
}

/// The devices a command works on: what the facade's detection found (the
/// concrete devices, which `demo` corrupts), and the one to use.
pub(crate) struct Selection {
    /// What was found.
    found: Detected,
    /// All devices, index = position.
    pub(crate) devices: Vec<Arc<dyn Device>>,
    /// The device to use.
    pub(crate) target: u32,
}

impl Selection {
    fn new(found: Detected) -> Self {
        Self {
            devices: found.devices(),
            found,
            target: 0,
        }
    }

    /// Why the mock stands in for CUDA devices, when it does.
    pub(crate) fn mock_reason(&self) -> Option<&str> {
        self.found.fallback_reason()
    }

    /// Whether the mock is in use.
    pub(crate) fn is_mock(&self) -> bool {
        self.found.is_mock()
    }

    /// The mock device, when it is in use.
    pub(crate) fn mock_device(&self) -> Option<&Arc<MockDevice>> {
        match &self.found {
            Detected::Mock { device, .. } => Some(device),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The target CUDA device, when CUDA devices are in use.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_device(&self) -> Option<&Arc<CudaDevice>> {
        match &self.found {
            Detected::Cuda(devices) => usize::try_from(self.target)
                .ok()
                .and_then(|i| devices.get(i)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// `cuda` or `mock`.
    pub(crate) fn kind(&self) -> &'static str {
        if self.is_mock() {
            "mock"
        } else {
            "cuda"
        }
    }

    /// Says once per command that the mock is in use. A fallback (`auto`
    /// found no CUDA device) is said even with `--quiet`: a run must never
    /// use host memory in silence. A mock asked for by name is said unless
    /// `--quiet`.
    pub(crate) fn announce(&self, quiet: bool) {
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

    /// Flips bits (`mask`) of one byte inside the most recent live allocation,
    /// behind the seal's back: the demo's simulated corruption.
    pub(crate) fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), CliError> {
        if let Some(device) = self.mock_device() {
            let id = device
                .live_buffers()
                .last()
                .copied()
                .ok_or_else(|| CliError::env("no live allocation to corrupt"))?;
            return device
                .flip_bits(id, offset, mask)
                .map_err(|e| CliError::env(format!("could not corrupt device memory: {e}")));
        }
        #[cfg(feature = "demo-cuda")]
        if let Some(dev) = self.cuda_device() {
            return dev
                .corrupt_one_byte_for_demo(offset, mask)
                .map_err(|e| CliError::env(format!("could not corrupt device memory: {e}")));
        }
        let _ = (offset, mask);
        Err(CliError::env("this device offers no corruption path"))
    }
}

/// Resolves a spec to devices through the facade's detection. `auto` falls
/// back to the mock (announced by [`Selection::announce`]).
pub(crate) fn select(spec: DeviceSpec) -> Result<Selection, CliError> {
    match spec {
        DeviceSpec::Mock => Ok(Selection::new(Detected::mock())),
        DeviceSpec::Auto => vram_residency::detect()
            .map(Selection::new)
            .map_err(|reason| CliError::env(reason.to_string())),
        DeviceSpec::AllCuda => detect_cuda().map(Selection::new).map_err(|reason| {
            CliError::env(format!(
                "--device cuda: no CUDA device can be used ({reason}); \
                 this command requires real GPU memory"
            ))
        }),
        DeviceSpec::Cuda(n) => {
            let mut sel = detect_cuda()
                .map(Selection::new)
                .map_err(|reason| CliError::env(reason.to_string()))?;
            let count = u32::try_from(sel.devices.len()).unwrap_or(u32::MAX);
            if n >= count {
                return Err(CliError::env(format!(
                    "no device cuda:{n}: {count} CUDA device(s) found"
                )));
            }
            sel.target = n;
            Ok(sel)
        }
    }
}
