//! [`PinnedStaging`]: page-locked host memory for asynchronous host-to-device copies.

use super::call;
use crate::DeviceError;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, PinnedHostSlice};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A page-locked host buffer that feeds asynchronous copies to a [`CudaBuffer`].
///
/// Each staging buffer carries a completion event, recorded after every copy that
/// reads it ([`CudaBuffer::write_at_async_pinned`]). Mutable access
/// ([`PinnedStaging::as_mut_slice`]) and drop both wait for that event first, so
/// the host can never overwrite or free bytes that a copy in flight still reads.
/// Shared access ([`PinnedStaging::as_slice`]) does not wait: a host-to-device
/// copy only reads the staging bytes, so the host may read (hash) them meanwhile.
///
/// [`CudaBuffer`]: super::CudaBuffer
/// [`CudaBuffer::write_at_async_pinned`]: super::CudaBuffer::write_at_async_pinned
pub struct PinnedStaging {
    // Field order matters only for readability: `Drop` waits on `done` before
    // either field is dropped.
    host: PinnedHostSlice<u8>,
    done: CudaEvent,
    /// Makes "wait for the last recording, then record again" one step, so two
    /// threads copying from this buffer on different streams at once cannot
    /// both chain to the same old recording (the second would forget the
    /// first's copy).
    recording: Mutex<()>,
}

impl fmt::Debug for PinnedStaging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedStaging")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl PinnedStaging {
    pub(super) fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<Self, DeviceError> {
        if bytes == 0 {
            return Err(DeviceError::InvalidArgument {
                reason: "zero-byte pinned staging buffer",
            });
        }
        if isize::try_from(bytes).is_err() {
            return Err(DeviceError::InvalidArgument {
                reason: "pinned staging buffer larger than isize::MAX bytes",
            });
        }
        // Flags 0: page-locked but not write-combined, because the host reads each
        // chunk back (to hash it) and reads from write-combined memory are uncached.
        // SAFETY: `alloc_pinned_with_flags` is unsafe only because the memory is
        // uninitialised; it is zeroed below before any slice of it is formed.
        let mut host = call("cuMemHostAlloc", || unsafe {
            ctx.alloc_pinned_with_flags::<u8>(bytes, 0)
        })?;
        let ptr = call("cuEventSynchronize", || host.as_mut_ptr())?;
        // SAFETY: `ptr` points to `bytes` bytes of page-locked host memory owned by
        // `host`, which no copy has touched yet; u8 has no invalid bit patterns.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        let done = call("cuEventCreate", || ctx.new_event(None))?;
        Ok(Self {
            host,
            done,
            recording: Mutex::new(()),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.host.len()
    }

    /// `true` when the buffer holds no bytes (never: zero-byte staging is refused).
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// The staging bytes, for the host to read (for example to hash a chunk while
    /// its copy is in flight). Does not wait for copies: they only read these bytes.
    ///
    /// # Errors
    /// [`DeviceError::Driver`] when the driver reports an earlier failure.
    pub fn as_slice(&self) -> Result<&[u8], DeviceError> {
        call("cuEventSynchronize", || self.host.as_slice())
    }

    /// The staging bytes, for the host to fill. Waits until every copy that reads
    /// this buffer has completed.
    ///
    /// # Errors
    /// [`DeviceError::Driver`] when waiting fails (for example an earlier copy
    /// faulted).
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], DeviceError> {
        self.wait()?;
        call("cuEventSynchronize", || self.host.as_mut_slice())
    }

    /// Waits until every copy recorded against this buffer has completed.
    ///
    /// # Errors
    /// [`DeviceError::Driver`] when the driver reports a failure.
    pub fn wait(&self) -> Result<(), DeviceError> {
        // cudarc first reports (and clears) an error stored by an earlier drop,
        // without waiting; a second try then really waits. A sticky context error
        // fails both times.
        call("cuEventSynchronize", || self.done.synchronize()).or_else(|first| {
            tracing::warn!(error = %first, "event wait reported an earlier error; waiting again");
            call("cuEventSynchronize", || self.done.synchronize())
        })
    }

    /// Records on `stream` that the copies enqueued so far read this buffer.
    ///
    /// One event covers every copy, on whatever stream: a staging buffer may feed
    /// buffers with different streams (`write_at_async_pinned` takes it by shared
    /// reference), and re-recording the event on stream B alone would forget a
    /// copy still in flight on stream A, so `as_mut_slice` or drop could let the
    /// host overwrite or free bytes that copy still reads. `stream` therefore
    /// first waits for the event's previous recording (a no-op when it was never
    /// recorded, and already implied when it was recorded on this stream), so the
    /// new recording completes only after every earlier copy as well.
    pub(super) fn record_use(&self, stream: &CudaStream) -> Result<(), DeviceError> {
        // The guard protects no data, only the order of the two driver calls.
        let _one_at_a_time = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        call("cuStreamWaitEvent", || stream.wait(&self.done))?;
        call("cuEventRecord", || self.done.record(stream))
    }
}

impl Drop for PinnedStaging {
    fn drop(&mut self) {
        // The page-locked memory is freed after this returns: no copy may still
        // be reading it.
        if let Err(err) = self.wait() {
            tracing::error!(error = %err, "waiting for a pinned staging buffer's last copy failed");
        }
    }
}
