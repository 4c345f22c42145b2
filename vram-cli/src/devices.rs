//! Device selection for the CLI: `auto`, `mock`, `cuda` or `cuda:N`. Keeps the
//! concrete device types so `demo` can reach their test-only corruption paths.

use crate::exit::CliError;
use std::sync::Arc;
use vram_residency::vram_core::Device;
use vram_residency::vram_mock::MockDevice;

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceSpec {
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
pub(crate) fn parse_spec(s: &str) -> Result<DeviceSpec, CliError> {
    match s {
        "auto" => Ok(DeviceSpec::Auto),
        "mock" => Ok(DeviceSpec::Mock),
        "cuda" => Ok(DeviceSpec::AllCuda),
        _ => {
            let shown = vram_validation::escape_for_log(s, 40);
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

/// The devices a command works on.
pub(crate) struct Selection {
    /// All devices, index = position.
    pub(crate) devices: Vec<Arc<dyn Device>>,
    /// The device to use.
    pub(crate) target: u32,
    /// Set when the mock is in use.
    pub(crate) mock: Option<Arc<MockDevice>>,
    #[cfg(feature = "cuda")]
    pub(crate) cuda: Vec<Arc<vram_residency::vram_core::cuda::CudaDevice>>,
    /// Why the mock is in use, when it is.
    pub(crate) mock_reason: Option<String>,
}

impl Selection {
    fn mock(reason: Option<String>) -> Self {
        let mock = MockDevice::new(0, vram_residency::FALLBACK_MOCK_CAPACITY);
        let dynamic: Arc<dyn Device> = mock.clone();
        Self {
            devices: vec![dynamic],
            target: 0,
            mock: Some(mock),
            #[cfg(feature = "cuda")]
            cuda: Vec::new(),
            mock_reason: reason,
        }
    }

    /// `cuda` or `mock`.
    pub(crate) fn kind(&self) -> &'static str {
        if self.mock.is_some() {
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
        if let Some(reason) = &self.mock_reason {
            eprintln!(
                "vram: NOTE: no CUDA device found ({}); using the MOCK device (host memory). \
                 Nothing is in GPU memory; use --device cuda to require a GPU.",
                vram_validation::escape_for_log(reason, 300)
            );
        } else if self.mock.is_some() && !quiet {
            eprintln!("vram: note: using the MOCK device (host memory), as asked; nothing is in GPU memory.");
        }
    }

    /// Flips bits (`mask`) of one byte inside the most recent live allocation,
    /// behind the seal's back: the demo's simulated corruption.
    pub(crate) fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), CliError> {
        if let Some(mock) = &self.mock {
            let id = mock
                .live_buffers()
                .last()
                .copied()
                .ok_or_else(|| CliError::env("no live allocation to corrupt"))?;
            return mock
                .flip_bits(id, offset, mask)
                .map_err(|e| CliError::env(format!("could not corrupt device memory: {e}")));
        }
        #[cfg(feature = "cuda")]
        if let Some(dev) = usize::try_from(self.target)
            .ok()
            .and_then(|i| self.cuda.get(i))
        {
            let id = dev
                .live_buffers()
                .last()
                .copied()
                .ok_or_else(|| CliError::env("no live allocation to corrupt"))?;
            let mut byte = [0u8; 1];
            dev.read_for_test(id, offset, &mut byte)
                .map_err(|e| CliError::env(format!("could not read device memory: {e}")))?;
            let flipped = [byte.first().copied().unwrap_or(0) ^ mask];
            return dev
                .overwrite(id, offset, &flipped)
                .map_err(|e| CliError::env(format!("could not corrupt device memory: {e}")));
        }
        let _ = (offset, mask);
        Err(CliError::env("this device offers no corruption path"))
    }
}

/// Resolves a spec to devices. `auto` falls back to the mock loudly.
pub(crate) fn select(spec: DeviceSpec) -> Result<Selection, CliError> {
    if std::env::var(vram_residency::FORCE_MOCK_ENV).is_ok_and(|v| v == "1")
        && spec == DeviceSpec::Auto
    {
        return Ok(Selection::mock(Some(format!(
            "{}=1",
            vram_residency::FORCE_MOCK_ENV
        ))));
    }
    match spec {
        DeviceSpec::Mock => Ok(Selection::mock(None)),
        DeviceSpec::Auto => match open_cuda() {
            Ok(sel) => Ok(sel),
            Err(reason) => Ok(Selection::mock(Some(reason))),
        },
        DeviceSpec::AllCuda => open_cuda().map_err(|reason| {
            CliError::env(format!(
                "--device cuda: no CUDA device can be used ({reason}); \
                 this command requires real GPU memory"
            ))
        }),
        DeviceSpec::Cuda(n) => {
            let mut sel = open_cuda().map_err(CliError::env)?;
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

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Selection, String> {
    use vram_residency::vram_core::cuda;
    let count = cuda::device_count().map_err(|e| e.to_string())?;
    if count == 0 {
        return Err("the CUDA driver reports no device".into());
    }
    let mut devices: Vec<Arc<dyn Device>> = Vec::new();
    let mut concrete = Vec::new();
    for i in 0..count {
        let d = cuda::CudaDevice::open(i).map_err(|e| e.to_string())?;
        devices.push(d.clone());
        concrete.push(d);
    }
    Ok(Selection {
        devices,
        target: 0,
        mock: None,
        cuda: concrete,
        mock_reason: None,
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Selection, String> {
    Err("this vram was built without the `cuda` feature".into())
}
