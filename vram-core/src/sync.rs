//! The atomics the capacity tracker uses: std's normally, loom's under `cfg(loom)`
//! so `tests/loom_capacity.rs` can explore every interleaving of the real code.
//!
//! `Arc` stays std's in both builds: loom's `Arc` cannot be a method receiver
//! (`self: &Arc<Self>`), and the property loom checks is the counter's
//! compare-and-swap protocol, which lives entirely in the atomic below.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
