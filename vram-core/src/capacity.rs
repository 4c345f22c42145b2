//! Lock-free reservation of device bytes before they are allocated.
//!
//! A [`CapacityTracker`] hands out [`Reservation`]s against a limit of
//! `capacity - headroom` bytes. Reserving is one compare-and-swap loop on a
//! single counter, so many threads can reserve at once without a lock, and the
//! counter can never pass the limit: a thread only publishes `used + bytes` when
//! that sum fits, and the swap fails if another thread moved `used` in between.
//! Dropping a reservation gives its bytes back.
//!
//! Invariants (checked by `tests/loom_capacity.rs` over every interleaving of
//! small cases and by `tests/capacity_stress.rs` under contention):
//! - `used() <= limit()` at every instant;
//! - no update is lost: `used()` is the sum of the live reservations;
//! - `used() == 0` once every reservation is dropped;
//! - a failed `reserve` changes nothing.

use crate::bytes::HumanBytes;
use crate::sync::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// The request does not fit in what is left under the limit.
    #[error(
        "insufficient capacity: needed {}, {} available of {} capacity (after headroom); \
         free sealed shards or lower the headroom",
        HumanBytes(*needed),
        HumanBytes(*available),
        HumanBytes(*capacity)
    )]
    Insufficient {
        /// Bytes requested.
        needed: u64,
        /// Bytes still reservable when the request was refused.
        available: u64,
        /// Total capacity the tracker was built with (before headroom).
        capacity: u64,
    },
    /// A zero-byte reservation was requested; it would hold nothing.
    #[error("a reservation of zero bytes was requested")]
    ZeroBytes,
}

/// Lock-free accounting of the bytes reserved on one device.
///
/// Build it with [`CapacityTracker::new`], share the returned `Arc` between
/// threads, and call [`reserve`](CapacityTracker::reserve) before each device
/// allocation.
pub struct CapacityTracker {
    capacity: u64,
    headroom: u64,
    limit: u64,
    used: AtomicU64,
}

impl CapacityTracker {
    /// A tracker for a device of `capacity` bytes that keeps `headroom` bytes
    /// free (for the driver, kernels' scratch memory, other processes). The
    /// reservable limit is `capacity - headroom`, or zero when the headroom is
    /// larger than the capacity.
    pub fn new(capacity: u64, headroom: u64) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            headroom,
            limit: capacity.saturating_sub(headroom),
            used: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes`, or refuses without changing anything.
    ///
    /// # Errors
    /// [`CapacityError::ZeroBytes`] for a zero-byte request;
    /// [`CapacityError::Insufficient`] when `used + bytes` would exceed the limit.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, CapacityError> {
        if bytes == 0 {
            return Err(CapacityError::ZeroBytes);
        }
        let mut current = self.used.load(Ordering::Acquire);
        loop {
            let next = match current.checked_add(bytes) {
                Some(next) if next <= self.limit => next,
                _ => {
                    return Err(CapacityError::Insufficient {
                        needed: bytes,
                        available: self.limit.saturating_sub(current),
                        capacity: self.capacity,
                    })
                }
            };
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        tracker: Arc::clone(self),
                        bytes,
                    })
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Bytes that could be reserved right now (`limit - used`).
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// The most that can be reserved at once: `capacity - headroom`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The capacity the tracker was built with.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The bytes kept free below the capacity.
    pub fn headroom(&self) -> u64 {
        self.headroom
    }

    fn release(&self, bytes: u64) {
        // Cannot underflow: `bytes` was added by the reservation being dropped
        // and nothing else subtracts it.
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl fmt::Debug for CapacityTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapacityTracker")
            .field("capacity", &self.capacity)
            .field("headroom", &self.headroom)
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

/// Bytes held against a [`CapacityTracker`]; released when dropped.
#[must_use = "dropping a reservation releases its bytes at once"]
pub struct Reservation {
    tracker: Arc<CapacityTracker>,
    bytes: u64,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.tracker.release(self.bytes);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::{CapacityError, CapacityTracker, Reservation};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn reservation_and_tracker_are_send_and_sync() {
        assert_send_sync::<Reservation>();
        assert_send_sync::<CapacityTracker>();
    }

    #[test]
    fn reserve_until_full_then_release() {
        let t = CapacityTracker::new(100, 10);
        assert_eq!((t.capacity(), t.headroom(), t.limit()), (100, 10, 90));
        let a = t.reserve(60).unwrap();
        assert_eq!((t.used(), t.available()), (60, 30));
        let b = t.reserve(30).unwrap();
        assert_eq!((t.used(), t.available()), (90, 0));
        assert_eq!(
            t.reserve(1).unwrap_err(),
            CapacityError::Insufficient {
                needed: 1,
                available: 0,
                capacity: 100
            }
        );
        assert_eq!(t.used(), 90, "a failed reserve changes nothing");
        drop(a);
        assert_eq!(t.used(), 30);
        assert_eq!(b.bytes(), 30);
        drop(b);
        assert_eq!(t.used(), 0);
    }

    #[test]
    fn zero_bytes_is_refused() {
        let t = CapacityTracker::new(100, 0);
        assert_eq!(t.reserve(0).unwrap_err(), CapacityError::ZeroBytes);
        assert_eq!(t.used(), 0);
    }

    #[test]
    fn headroom_above_capacity_leaves_nothing_reservable() {
        let t = CapacityTracker::new(10, 20);
        assert_eq!(t.limit(), 0);
        assert!(matches!(
            t.reserve(1),
            Err(CapacityError::Insufficient { available: 0, .. })
        ));
    }

    #[test]
    fn huge_requests_do_not_overflow() {
        let t = CapacityTracker::new(u64::MAX, 0);
        let _a = t.reserve(u64::MAX - 5).unwrap();
        let err = t.reserve(u64::MAX).unwrap_err();
        assert_eq!(
            err,
            CapacityError::Insufficient {
                needed: u64::MAX,
                available: 5,
                capacity: u64::MAX
            }
        );
        assert_eq!(t.used(), u64::MAX - 5);
        let _b = t.reserve(5).unwrap();
        assert_eq!(t.available(), 0);
    }

    #[test]
    fn debug_shows_bytes_only() {
        let t = CapacityTracker::new(100, 0);
        let r = t.reserve(42).unwrap();
        assert_eq!(format!("{r:?}"), "Reservation { bytes: 42 }");
        assert!(format!("{t:?}").contains("used: 42"));
    }

    #[test]
    fn error_message_is_actionable() {
        let t = CapacityTracker::new(24 << 30, 0);
        let _a = t.reserve(20 << 30).unwrap();
        let msg = t.reserve(12 << 30).unwrap_err().to_string();
        assert!(msg.contains("needed 12.0 GiB"), "{msg}");
        assert!(
            msg.contains("4.0 GiB (4294967296 bytes) available"),
            "{msg}"
        );
        assert!(msg.contains("24.0 GiB"), "{msg}");
    }
}
