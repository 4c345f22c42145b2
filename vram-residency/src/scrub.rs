//! A background scrubber: sweeps every leaf of the shards it watches at a
//! bounded byte rate, so corruption is found between full verifications
//! without stealing more than a known share of the device and host.

use crate::manager::VramManager;
use crate::shard::SealedShard;
use crate::verify::VerifyPolicy;
use crate::VramError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Called (on the scrubber thread) for every integrity failure found.
pub type ScrubCallback = Box<dyn Fn(&VramError) + Send + 'static>;

/// Scrubber settings.
pub struct ScrubConfig {
    /// Upper bound on bytes re-read and hashed per second (at least 1 MiB/s).
    pub bytes_per_second: u64,
    /// Leaves verified per step (the unit of work between rate checks).
    pub leaves_per_step: u32,
    /// Called for every failure.
    pub on_failure: Option<ScrubCallback>,
}

impl std::fmt::Debug for ScrubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrubConfig")
            .field("bytes_per_second", &self.bytes_per_second)
            .field("leaves_per_step", &self.leaves_per_step)
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

impl ScrubConfig {
    /// The slowest scrub accepted, bytes per second (1 MiB/s).
    pub const MIN_BYTES_PER_SECOND: u64 = 1 << 20;

    /// A scrubber limited to `bytes_per_second`, 4 leaves per step, no callback.
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            leaves_per_step: 4,
            on_failure: None,
        }
    }

    /// Checks the settings [`Scrubber::start`] checks, so that a caller can
    /// refuse them before doing any work (a CLI, before sealing).
    ///
    /// # Errors
    /// [`VramError::InvalidConfig`] for a rate below
    /// [`ScrubConfig::MIN_BYTES_PER_SECOND`] or zero leaves per step.
    pub fn validate(&self) -> Result<(), VramError> {
        if self.bytes_per_second < Self::MIN_BYTES_PER_SECOND || self.leaves_per_step == 0 {
            return Err(VramError::InvalidConfig {
                reason: "scrub rate must be at least 1 MiB/s with at least one leaf per step"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Progress of a scrubber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScrubStats {
    /// Complete sweeps over all watched shards.
    pub sweeps: u64,
    /// Bytes re-read and hashed.
    pub bytes_scrubbed: u64,
    /// Integrity failures found.
    pub failures: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    sweeps: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
    wake: Mutex<()>,
    cv: Condvar,
}

/// A running scrubber. Dropping it stops the thread and waits for it.
pub struct Scrubber {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Scrubber {
    /// Starts scrubbing `shards` (held weakly: dropping a shard removes it from
    /// the sweep). A shard that fails is reported once and no longer scrubbed.
    ///
    /// # Errors
    /// [`VramError::InvalidConfig`] for a rate below 1 MiB/s or zero leaves per
    /// step.
    pub fn start(
        manager: &VramManager,
        shards: &[Arc<SealedShard>],
        config: ScrubConfig,
    ) -> Result<Self, VramError> {
        config.validate()?;
        let shared = Arc::new(Shared::default());
        let watched: Vec<Weak<SealedShard>> = shards.iter().map(Arc::downgrade).collect();
        let manager = manager.clone();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vram-scrubber".into())
            .spawn(move || run(&manager, &watched, &config, &thread_shared))
            .map_err(|_| VramError::InvalidConfig {
                reason: "could not start the scrubber thread".into(),
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Progress so far.
    pub fn stats(&self) -> ScrubStats {
        ScrubStats {
            sweeps: self.shared.sweeps.load(Ordering::Relaxed),
            bytes_scrubbed: self.shared.bytes.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// Stops the scrubber and waits for its thread; returns the final stats.
    pub fn stop(mut self) -> ScrubStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("scrubber thread panicked");
            }
        }
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sleeps until `deadline` or until asked to stop; returns false on stop.
fn pace(shared: &Shared, deadline: Instant) -> bool {
    let mut guard = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        let wait = deadline.saturating_duration_since(now);
        guard = match shared.cv.wait_timeout(guard, wait) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

fn run(
    manager: &VramManager,
    watched: &[Weak<SealedShard>],
    config: &ScrubConfig,
    shared: &Shared,
) {
    let mut failed = vec![false; watched.len()];
    let started = Instant::now();
    let mut budget_used = 0u64;
    let rate = config.bytes_per_second;
    loop {
        let mut any_alive = false;
        for (slot, weak) in watched.iter().enumerate() {
            if failed.get(slot).copied().unwrap_or(true) {
                continue;
            }
            let step = u64::from(config.leaves_per_step);
            let mut first = 0u64;
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                // Upgrade per step and let go before pacing, so a shard dropped
                // by its owner is freed at once, not after our next sleep.
                let Some(shard) = weak.upgrade() else { break };
                any_alive = true;
                let count = shard.leaf_hashes().len() as u64;
                if first >= count {
                    break;
                }
                let last = first.saturating_add(step).min(count);
                let indices: Vec<u64> = (first..last).collect();
                let t0 = Instant::now();
                // A shard an earlier verification found wrong is refused (and
                // the refusal audited), even if its bytes read back right now.
                let result = shard.ensure_not_compromised().and_then(|()| {
                    manager.verify_leaf_indices(&shard, &indices).map(|bytes| {
                        (
                            indices.len() as u64,
                            bytes,
                            crate::verify::HashPath::HostReadback,
                        )
                    })
                });
                let bytes = result.as_ref().map_or(0, |r| r.1);
                let outcome = manager.finish_verification(
                    &shard,
                    VerifyPolicy::Sampled {
                        leaves: config.leaves_per_step,
                    },
                    result,
                    t0.elapsed(),
                    // Scrub steps are frequent; only failures are audited.
                    false,
                );
                let compromised = shard.is_compromised();
                drop(shard);
                if let Err(e) = outcome {
                    shared.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(cb) = &config.on_failure {
                        cb(&e);
                    }
                    // A compromised shard is done with; one whose step could
                    // not complete (a device read error) is retried next sweep.
                    if compromised {
                        if let Some(f) = failed.get_mut(slot) {
                            *f = true;
                        }
                    }
                    break;
                }
                shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                budget_used = budget_used.saturating_add(bytes);
                // Token bucket: never run ahead of `rate` bytes per second.
                let due = Duration::from_secs_f64(budget_used as f64 / rate as f64);
                if !pace(shared, started.checked_add(due).unwrap_or(started)) {
                    return;
                }
                first = last;
            }
        }
        shared.sweeps.fetch_add(1, Ordering::Relaxed);
        if !any_alive {
            // Nothing left to scrub; idle until stopped.
            if !pace(
                shared,
                Instant::now()
                    .checked_add(Duration::from_millis(200))
                    .unwrap_or_else(Instant::now),
            ) {
                return;
            }
        }
    }
}
