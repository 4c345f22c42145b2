//! Errors of the device layer.

/// What can go wrong talking to a device. Messages carry numbers a user can act
/// on and never contain device addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The device has too little free memory for the allocation.
    #[error("device {device}: out of memory: needed {needed} bytes, {available} bytes free")]
    OutOfMemory {
        /// Device index.
        device: u32,
        /// Bytes requested.
        needed: u64,
        /// Bytes the device reported free.
        available: u64,
    },
    /// An access outside a buffer.
    #[error(
        "access out of bounds: offset {offset} + length {len} exceeds buffer of {buffer_len} bytes"
    )]
    OutOfBounds {
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Length of the buffer.
        buffer_len: u64,
    },
    /// A request the device layer refuses (e.g. a zero-byte allocation).
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The backend does not implement this operation.
    #[error("{operation} is not supported by this device")]
    Unsupported {
        /// What was asked for.
        operation: &'static str,
    },
    /// No CUDA driver library could be loaded (libcuda.so absent).
    #[error("no CUDA driver found (libcuda could not be loaded); install the NVIDIA driver or use the mock device")]
    NoDriver,
    /// The driver loaded but reports no device (or not the requested one).
    #[error("no CUDA device {index}: the driver reports {count} device(s)")]
    NoDevice {
        /// Requested ordinal.
        index: u32,
        /// Devices the driver reports.
        count: u32,
    },
    /// A driver call failed. `call` names the API; `code` is the driver's result
    /// name (e.g. `CUDA_ERROR_ILLEGAL_ADDRESS`).
    #[error("CUDA {call} failed: {code}")]
    Driver {
        /// The driver API called.
        call: &'static str,
        /// The driver's error name.
        code: String,
    },
    /// A fault injected by a test device (vram-mock).
    #[error("injected fault: {what}")]
    InjectedFault {
        /// Which fault fired.
        what: &'static str,
    },
}

impl DeviceError {
    /// Whether retrying later (after memory is freed) may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::OutOfMemory { .. })
    }
}

/// Failure of [`DeviceBuffer::stream_from`](crate::DeviceBuffer::stream_from)
/// or of a [`source`](crate::source) stream: the source or the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Reading the source failed.
    #[error("reading the source failed: {}", .0.kind())]
    Read(std::io::Error),
    /// A source of announced length held fewer or more bytes
    /// ([`source::stream_chunks`](crate::source::stream_chunks)).
    #[error("the source announced {announced} bytes but held {read}")]
    Length {
        /// Bytes announced.
        announced: u64,
        /// Bytes read (announced + 1 when it ran long).
        read: u64,
    },
    /// The device failed, or the source holds more bytes than the buffer.
    #[error(transparent)]
    Device(#[from] DeviceError),
}
