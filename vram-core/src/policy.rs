//! The VRAM-only policy: sealed weights must live in dedicated device memory.
//!
//! A device is refused when the bytes of an allocation might not stay in its
//! own VRAM:
//! - an integrated GPU shares system memory with the CPU;
//! - an allocator handing out managed (unified) memory lets the driver migrate
//!   pages to the host;
//! - an allocator handing out host-mapped memory keeps the bytes in host RAM.
//!
//! Pageable memory access (HMM / ATS, [`DeviceAttributes::pageable_memory_access`])
//! alone is *not* a violation: it lets a kernel read host memory, but the
//! weights are still copied into plain device allocations, which stay in VRAM.

use crate::bytes::HumanBytes;
use crate::{DeviceAttributes, DeviceInfo};

/// Why a device, or a request on it, breaks the VRAM-only policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// The GPU is integrated and shares system memory with the CPU.
    #[error(
        "{device} is an integrated GPU sharing system memory: weights would not be in \
         dedicated VRAM; use a discrete GPU"
    )]
    IntegratedGpu {
        /// The refused device.
        device: DeviceInfo,
    },
    /// The backend would hand out managed (unified) memory, which the driver may
    /// migrate to the host.
    #[error(
        "{device} would allocate managed (unified) memory that the driver may migrate to \
         host RAM: weights would not stay in VRAM; use a backend that allocates plain \
         device memory"
    )]
    ManagedMemory {
        /// The refused device.
        device: DeviceInfo,
    },
    /// The backend would hand out host memory mapped into the device.
    #[error(
        "{device} would allocate host-mapped memory: weights would stay in host RAM, not \
         VRAM; use a backend that allocates plain device memory"
    )]
    HostMappedMemory {
        /// The refused device.
        device: DeviceInfo,
    },
    /// The device has too little memory for the request.
    #[error(
        "{device} has {} available but {} are needed; free memory on the device, lower \
         the headroom or use a larger GPU",
        HumanBytes(*available),
        HumanBytes(*needed)
    )]
    InsufficientCapacity {
        /// The device asked.
        device: DeviceInfo,
        /// Bytes requested.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
}

impl PolicyViolation {
    /// Short, stable name for audit records: `integrated_gpu`, `managed_memory`,
    /// `host_mapped_memory`, `insufficient_capacity`.
    pub fn policy_name(&self) -> &'static str {
        match self {
            Self::IntegratedGpu { .. } => "integrated_gpu",
            Self::ManagedMemory { .. } => "managed_memory",
            Self::HostMappedMemory { .. } => "host_mapped_memory",
            Self::InsufficientCapacity { .. } => "insufficient_capacity",
        }
    }

    /// The device the violation is about.
    pub fn device(&self) -> &DeviceInfo {
        match self {
            Self::IntegratedGpu { device }
            | Self::ManagedMemory { device }
            | Self::HostMappedMemory { device }
            | Self::InsufficientCapacity { device, .. } => device,
        }
    }

    /// Whether the same request may succeed later (only when memory is freed).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::InsufficientCapacity { .. })
    }
}

/// Refuses devices whose allocations might not live in dedicated VRAM.
/// Checks in order: integrated GPU, managed memory, host-mapped memory; the
/// first that applies is reported.
///
/// # Errors
/// The [`PolicyViolation`] naming the first rule the device breaks.
pub fn check_vram_only(info: &DeviceInfo, attrs: &DeviceAttributes) -> Result<(), PolicyViolation> {
    let device = || info.clone();
    if attrs.integrated {
        return Err(PolicyViolation::IntegratedGpu { device: device() });
    }
    if attrs.managed_memory {
        return Err(PolicyViolation::ManagedMemory { device: device() });
    }
    if attrs.host_mapped {
        return Err(PolicyViolation::HostMappedMemory { device: device() });
    }
    Ok(())
}

/// Refuses a request of `needed` bytes when only `available` are free.
///
/// # Errors
/// [`PolicyViolation::InsufficientCapacity`] when `needed > available`.
pub fn check_fits(info: &DeviceInfo, needed: u64, available: u64) -> Result<(), PolicyViolation> {
    if needed > available {
        return Err(PolicyViolation::InsufficientCapacity {
            device: info.clone(),
            needed,
            available,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_fits, check_vram_only, PolicyViolation};
    use crate::{DeviceAttributes, DeviceInfo, DeviceKind};

    fn gpu() -> DeviceInfo {
        DeviceInfo {
            index: 0,
            name: "NVIDIA X".to_string(),
            kind: DeviceKind::Cuda,
            uuid: None,
        }
    }

    #[test]
    fn discrete_gpu_passes_even_with_pageable_memory_access() {
        let attrs = DeviceAttributes {
            pageable_memory_access: true,
            ..DeviceAttributes::default()
        };
        assert_eq!(check_vram_only(&gpu(), &attrs), Ok(()));
        assert_eq!(
            check_vram_only(&gpu(), &DeviceAttributes::default()),
            Ok(())
        );
    }

    #[test]
    fn each_attribute_is_refused_with_its_own_name() {
        let cases = [
            (
                DeviceAttributes {
                    integrated: true,
                    ..DeviceAttributes::default()
                },
                "integrated_gpu",
            ),
            (
                DeviceAttributes {
                    managed_memory: true,
                    ..DeviceAttributes::default()
                },
                "managed_memory",
            ),
            (
                DeviceAttributes {
                    host_mapped: true,
                    ..DeviceAttributes::default()
                },
                "host_mapped_memory",
            ),
        ];
        for (attrs, name) in cases {
            let v = check_vram_only(&gpu(), &attrs).unwrap_err();
            assert_eq!(v.policy_name(), name);
            assert_eq!(v.device(), &gpu());
            assert!(!v.is_retriable());
        }
    }

    #[test]
    fn integrated_is_reported_first() {
        let attrs = DeviceAttributes {
            integrated: true,
            managed_memory: true,
            host_mapped: true,
            pageable_memory_access: true,
        };
        assert!(matches!(
            check_vram_only(&gpu(), &attrs),
            Err(PolicyViolation::IntegratedGpu { .. })
        ));
    }

    #[test]
    fn messages_say_what_to_do() {
        let v = check_vram_only(
            &gpu(),
            &DeviceAttributes {
                integrated: true,
                ..DeviceAttributes::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            v.to_string(),
            "device 0 (NVIDIA X) is an integrated GPU sharing system memory: weights would \
             not be in dedicated VRAM; use a discrete GPU"
        );
        let v = check_fits(&gpu(), 12 << 30, 9 << 29).unwrap_err();
        let msg = v.to_string();
        assert!(msg.starts_with("device 0 (NVIDIA X) has 4.5 GiB"), "{msg}");
        assert!(
            msg.contains("12.0 GiB (12884901888 bytes) are needed"),
            "{msg}"
        );
        assert_eq!(v.policy_name(), "insufficient_capacity");
        assert!(v.is_retriable());
    }

    #[test]
    fn fits_at_the_boundary() {
        assert_eq!(check_fits(&gpu(), 10, 10), Ok(()));
        assert_eq!(check_fits(&gpu(), 0, 0), Ok(()));
        assert!(check_fits(&gpu(), 11, 10).is_err());
    }

    #[test]
    fn device_names_from_the_driver_are_escaped_and_truncated() {
        let info = DeviceInfo {
            index: 3,
            name: format!("evil\n\u{1b}[31m{}", "x".repeat(100)),
            kind: DeviceKind::Cuda,
            uuid: None,
        };
        let shown = info.to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.starts_with("device 3 (evil\\n\\u{1b}[31m"), "{shown}");
        assert!(shown.ends_with("...)"), "{shown}");
        assert!(shown.len() < 100, "{shown}");
    }
}
