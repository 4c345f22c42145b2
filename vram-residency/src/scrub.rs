//! A background scrubber: sweeps every leaf of the shards it watches at a
//! bounded byte rate, so corruption is found between full verifications
//! without stealing more than a known share of the device and host.
//!
//! Each sweep visits the watched shards in a random order and each shard's
//! leaves in a fresh random permutation (system CSPRNG), and every step also
//! reads `samples_per_step` leaves drawn at random: a co-tenant who can write
//! device memory cannot tell which leaves the scrubber reads next, so it
//! cannot corrupt leaves "just behind the sweep" and restore them before the
//! sweep comes round. Before a shard's first step of each sweep, its seal
//! (the tag over every sealed field, and the leaf list against the root) is
//! checked again, so a change to host-side seal state is found within one
//! sweep too.
//!
//! **Worst-case detection time.** With `n` leaves watched in all (`B` bytes),
//! `k = leaves_per_step`, `s = samples_per_step` and a rate of `R` bytes per
//! second, one sweep takes `ceil(n / k)` steps per shard and at most
//! `T = B * (1 + s / k) / R` seconds (the seal checks hash only the leaf list,
//! 32 bytes per leaf, and are not counted against the rate) when every step
//! reads at least [`ScrubConfig::MIN_STEP_CHARGE_BYTES`] of whole leaves; a
//! step that reads less (a small shard, a short last leaf) is charged that
//! much, so a sweep then takes at most
//! `sum over shards of ceil(n_shard / k) * max(step bytes, 256 KiB) / R`. The rate is a budget, never a floor: the
//! scrubber sleeps between steps, and time it fell behind is not made up in
//! a burst. Every leaf is read once in every sweep, so a corruption that
//! stays in place is found by
//! the end of the first sweep that starts after it appears: within `2 T` of
//! its appearance (the rest of the current sweep plus one whole sweep), and
//! within `ceil(n_shard / k)` steps of that sweep reaching its shard. The
//! random samples can only find it sooner. The sweep order costs 8 bytes per
//! leaf of the shard being swept (one shard at a time).

use crate::manager::VramManager;
use crate::shard::SealedShard;
use crate::verify::{AuditMode, Scope};
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
    /// Leaves of the sweep order verified per step (the unit of work between
    /// rate checks), 1 to [`ScrubConfig::MAX_LEAVES_PER_STEP`].
    pub leaves_per_step: u32,
    /// Extra leaves drawn at random per step, on top of the sweep order (0 to
    /// [`ScrubConfig::MAX_LEAVES_PER_STEP`]).
    pub samples_per_step: u32,
    /// Called for every failure.
    pub on_failure: Option<ScrubCallback>,
}

impl std::fmt::Debug for ScrubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrubConfig")
            .field("bytes_per_second", &self.bytes_per_second)
            .field("leaves_per_step", &self.leaves_per_step)
            .field("samples_per_step", &self.samples_per_step)
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

impl ScrubConfig {
    /// The slowest scrub accepted, bytes per second (1 MiB/s).
    pub const MIN_BYTES_PER_SECOND: u64 = 1 << 20;

    /// The least a scrub step is charged against the rate, in bytes: a step's
    /// fixed costs (a seal check at the start of each sweep, random draws, a
    /// device read and a hash per leaf) do not shrink with the bytes it reads,
    /// so a small shard (a 6-byte file is one 6-byte leaf) would otherwise be
    /// swept hundreds of thousands of times a second, using a whole core while
    /// staying "under" the byte rate.
    pub const MIN_STEP_CHARGE_BYTES: u64 = 256 * 1024;

    /// The most leaves (of the sweep order, or random samples) per step: a
    /// step's index list stays small whatever is asked for.
    pub const MAX_LEAVES_PER_STEP: u32 = 1 << 16;

    /// A scrubber limited to `bytes_per_second`, 4 leaves of the sweep order
    /// and 1 random sample per step, no callback.
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            leaves_per_step: 4,
            samples_per_step: 1,
            on_failure: None,
        }
    }

    /// Checks the settings [`Scrubber::start`] checks, so that a caller can
    /// refuse them before doing any work (a CLI, before sealing).
    ///
    /// # Errors
    /// [`VramError::InvalidConfig`] for a rate below
    /// [`ScrubConfig::MIN_BYTES_PER_SECOND`], zero leaves per step, or more
    /// than [`ScrubConfig::MAX_LEAVES_PER_STEP`] leaves or samples per step.
    pub fn validate(&self) -> Result<(), VramError> {
        if self.bytes_per_second < Self::MIN_BYTES_PER_SECOND || self.leaves_per_step == 0 {
            return Err(VramError::InvalidConfig {
                reason: "scrub rate must be at least 1 MiB/s with at least one leaf per step"
                    .into(),
            });
        }
        if self.leaves_per_step > Self::MAX_LEAVES_PER_STEP
            || self.samples_per_step > Self::MAX_LEAVES_PER_STEP
        {
            return Err(VramError::InvalidConfig {
                reason: format!(
                    "scrub steps take at most {} leaves and {} random samples",
                    Self::MAX_LEAVES_PER_STEP,
                    Self::MAX_LEAVES_PER_STEP
                ),
            });
        }
        Ok(())
    }

    /// Worst-case seconds from the appearance of a corruption that stays in
    /// place to its detection, for `total_bytes` watched: two sweep periods,
    /// `2 * total_bytes * (1 + samples_per_step / leaves_per_step) / rate`
    /// (see this module's documentation), for steps that read at least
    /// [`ScrubConfig::MIN_STEP_CHARGE_BYTES`]. Device read and hashing time
    /// beyond the rate are not included: the rate is an upper bound.
    pub fn worst_case_detection_secs(&self, total_bytes: u64) -> f64 {
        let k = f64::from(self.leaves_per_step.max(1));
        let s = f64::from(self.samples_per_step);
        let rate = self.bytes_per_second.max(1) as f64;
        2.0 * total_bytes as f64 * (1.0 + s / k) / rate
    }
}

/// Progress of a scrubber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScrubStats {
    /// Complete sweeps over all watched shards.
    pub sweeps: u64,
    /// Leaves re-read and hashed (sweep order and random samples).
    pub leaves_checked: u64,
    /// Seal checks (tag and leaf list against the root), one per shard per
    /// sweep.
    pub seal_checks: u64,
    /// Bytes re-read and hashed.
    pub bytes_scrubbed: u64,
    /// Integrity failures found.
    pub failures: u64,
    /// When the last complete sweep over all watched shards ended, in
    /// milliseconds since the Unix epoch (`None` before the first one).
    pub last_sweep_unix_ms: Option<u64>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    sweeps: AtomicU64,
    leaves: AtomicU64,
    seal_checks: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
    /// Milliseconds since the Unix epoch at the end of the last sweep; 0: none.
    last_sweep_unix_ms: AtomicU64,
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
            leaves_checked: self.shared.leaves.load(Ordering::Relaxed),
            seal_checks: self.shared.seal_checks.load(Ordering::Relaxed),
            bytes_scrubbed: self.shared.bytes.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
            last_sweep_unix_ms: Some(self.shared.last_sweep_unix_ms.load(Ordering::Relaxed))
                .filter(|ms| *ms > 0),
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

/// What one step costs against the rate: the bytes it read, at least whole
/// leaves (a shard's short last leaf costs a leaf) and at least
/// [`ScrubConfig::MIN_STEP_CHARGE_BYTES`].
fn step_charge(bytes: u64, leaves: u64, leaf_bytes: u64) -> u64 {
    bytes
        .max(leaves.saturating_mul(leaf_bytes))
        .max(ScrubConfig::MIN_STEP_CHARGE_BYTES)
}

/// When the step after one that began at `step_started` and cost `charge`
/// bytes may begin: `charge / rate` after the later of the previous deadline
/// and the step's start, so time spent behind is never made up in a burst.
fn next_pace(previous: Instant, step_started: Instant, charge: u64, rate: u64) -> Instant {
    let cost = Duration::from_secs_f64(charge as f64 / rate.max(1) as f64);
    let from = previous.max(step_started);
    from.checked_add(cost).unwrap_or(from)
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

/// Where one shard is in the current sweep.
pub(crate) struct ShardSweep {
    /// A random permutation of the shard's leaf indices.
    order: Vec<u64>,
    /// How many of `order` have been checked.
    next: usize,
    /// When the sweep's first step began: every leaf it checks holds at or
    /// after this.
    started: Instant,
}

/// What one scrub step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Leaves re-read and hashed (sweep order plus samples).
    pub(crate) leaves: u64,
    /// Bytes re-read and hashed.
    pub(crate) bytes: u64,
    /// Whether this step checked the seal (the first step of a sweep).
    pub(crate) seal_checked: bool,
    /// Whether the shard's sweep is complete after this step.
    pub(crate) sweep_done: bool,
}

/// One scrub step of `shard`. The first step of a sweep (`sweep` is `None`)
/// draws a fresh random leaf order and checks the seal; every step then
/// checks the next `leaves_per_step` leaves of that order plus
/// `samples_per_step` random leaves, through the one verification entry
/// point (failures audited, successes not). `sweep` is reset to `None` when
/// the order is exhausted.
pub(crate) fn scrub_step(
    manager: &VramManager,
    shard: &SealedShard,
    sweep: &mut Option<ShardSweep>,
    leaves_per_step: u32,
    samples_per_step: u32,
) -> Result<Step, VramError> {
    let count = shard.leaf_hashes().len() as u64;
    let seal_checked = sweep.is_none();
    let current = match sweep {
        Some(s) => s,
        None => sweep.insert(ShardSweep {
            order: crate::sampling::random_permutation(count)?,
            next: 0,
            started: Instant::now(),
        }),
    };
    let take = usize::try_from(leaves_per_step).unwrap_or(usize::MAX);
    let end = current.next.saturating_add(take).min(current.order.len());
    let mut indices: Vec<u64> = current
        .order
        .get(current.next..end)
        .map(<[u64]>::to_vec)
        .unwrap_or_default();
    current.next = end;
    let sweep_done = current.next >= current.order.len();
    indices.extend(crate::sampling::random_leaf_indices(
        count,
        samples_per_step,
    )?);
    let finished = if sweep_done {
        sweep.take().map(|s| s.started)
    } else {
        None
    };
    // A shard an earlier verification found wrong is refused there (and the
    // refusal audited), even if its bytes read back right now.
    let report = manager.verifier().verify(
        shard,
        Scope::ScrubStep {
            leaves_per_step,
            indices: &indices,
            check_seal: seal_checked,
        },
        // Scrub steps are frequent; only failures are audited.
        AuditMode::FailuresOnly,
    )?;
    if let Some(started) = finished {
        // Every leaf of the shard was checked in this sweep (each step's
        // seal check too, the first one included).
        shard.note_full_verification(started);
    }
    Ok(Step {
        leaves: report.leaves_checked,
        bytes: report.bytes_checked,
        seal_checked,
        sweep_done,
    })
}

fn run(
    manager: &VramManager,
    watched: &[Weak<SealedShard>],
    config: &ScrubConfig,
    shared: &Shared,
) {
    let mut failed = vec![false; watched.len()];
    let mut next_step = Instant::now();
    let rate = config.bytes_per_second.max(1);
    loop {
        let mut any_alive = false;
        // Shards too are visited in a fresh random order each sweep.
        let shard_order = match crate::sampling::random_permutation(watched.len() as u64) {
            Ok(order) => order,
            Err(e) => {
                tracing::error!(error = %e, "scrubber stopped: no random sweep order");
                return;
            }
        };
        for slot in shard_order {
            let Ok(slot) = usize::try_from(slot) else {
                continue;
            };
            let Some(weak) = watched.get(slot) else {
                continue;
            };
            if failed.get(slot).copied().unwrap_or(true) {
                continue;
            }
            let mut sweep = None;
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                // Upgrade per step and let go before pacing, so a shard dropped
                // by its owner is freed at once, not after our next sleep.
                let Some(shard) = weak.upgrade() else { break };
                any_alive = true;
                let step_started = Instant::now();
                let step = scrub_step(
                    manager,
                    &shard,
                    &mut sweep,
                    config.leaves_per_step,
                    config.samples_per_step,
                );
                let compromised = shard.is_compromised();
                let leaf_bytes = shard.tree_digest().descriptor.leaf_size.bytes();
                drop(shard);
                let (leaves, bytes, done) = match step {
                    Ok(s) => {
                        if s.seal_checked {
                            shared.seal_checks.fetch_add(1, Ordering::Relaxed);
                        }
                        (s.leaves, s.bytes, s.sweep_done)
                    }
                    Err(e) => {
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
                        // A failed step is paced too: a device that keeps
                        // failing reads is retried at the budget, not flat out.
                        next_step = next_pace(next_step, step_started, step_charge(0, 0, 0), rate);
                        if !pace(shared, next_step) {
                            return;
                        }
                        break;
                    }
                };
                shared.leaves.fetch_add(leaves, Ordering::Relaxed);
                shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                // The rate is a budget, not a floor: each step is charged at
                // least its fixed costs (see `step_charge`), and time the
                // scrubber fell behind (a slow device, a busy host) is not
                // made up in a burst afterwards.
                let charge = step_charge(bytes, leaves, leaf_bytes);
                next_step = next_pace(next_step, step_started, charge, rate);
                if !pace(shared, next_step) {
                    return;
                }
                if done {
                    break;
                }
            }
        }
        shared.sweeps.fetch_add(1, Ordering::Relaxed);
        if any_alive {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            shared
                .last_sweep_unix_ms
                .store(now_ms.max(1), Ordering::Relaxed);
        }
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;
    use crate::{SealRequest, SealSource};
    use crate::{VramConfig, VramManager};
    use std::sync::Arc;
    use vram_core::Device;
    use vram_crypto::LeafSize;
    use vram_mock::MockDevice;
    use vram_secrets::WorkerSecret;

    const LEAF: u64 = 4096;

    fn manager(device: Arc<MockDevice>) -> VramManager {
        let device: Arc<dyn Device> = device;
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![9u8; 32])).unwrap();
        let config = VramConfig::builder(secret)
            .device(device)
            .leaf_size(LeafSize::new(LEAF).unwrap())
            .build();
        VramManager::new(config).unwrap()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// A corruption that stays in place is found within one sweep: counting
    /// the sweep-order leaves checked until the failure, never more than the
    /// shard's leaf count, wherever the corrupt leaf is. Deterministic: it
    /// holds for every permutation the RNG can draw.
    #[test]
    fn planted_corruption_is_found_within_one_sweep() {
        let device = MockDevice::new(0, 64 << 20);
        let m = manager(Arc::clone(&device));
        let leaves = 64u64;
        for target in [0u64, 17, 63] {
            let shard = m
                .seal(
                    &SealRequest::inline(0).unwrap(),
                    SealSource::Bytes(&data((leaves * LEAF) as usize)),
                )
                .unwrap();
            let buffer = *device.live_buffers().last().unwrap();
            device.flip_bits(buffer, target * LEAF + 5, 1).unwrap();
            let mut sweep = None;
            let mut steps = 0u64;
            let err = loop {
                match scrub_step(&m, &shard, &mut sweep, 1, 0) {
                    Ok(s) => {
                        steps += 1;
                        assert!(!s.sweep_done || steps < leaves, "a whole sweep missed it");
                    }
                    Err(e) => break e,
                }
            };
            // The failing step is step `steps + 1`.
            assert!(steps < leaves, "found after {steps} steps of {leaves}");
            assert!(matches!(err, VramError::IntegrityViolation { .. }), "{err}");
        }
    }

    /// Sweeps do not run in index order, and two sweeps of one shard do not
    /// share an order (before: always leaf 0, 1, 2, ...).
    #[test]
    fn each_sweep_runs_in_a_fresh_random_order() {
        let device = MockDevice::new(0, 64 << 20);
        let m = manager(device);
        let leaves = 200u64;
        let shard = m
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&data((leaves * LEAF) as usize)),
            )
            .unwrap();
        let mut orders = Vec::new();
        for _ in 0..2 {
            let mut sweep = None;
            let mut order = Vec::new();
            loop {
                if sweep.is_none() {
                    // Peek at the order the next sweep will use.
                    scrub_step(&m, &shard, &mut sweep, 0, 0).unwrap();
                    order = sweep.as_ref().unwrap().order.clone();
                }
                let s = scrub_step(&m, &shard, &mut sweep, 50, 0).unwrap();
                if s.sweep_done {
                    break;
                }
            }
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..leaves).collect::<Vec<_>>());
            assert_ne!(order, sorted, "the sweep ran in index order");
            orders.push(order);
        }
        assert_ne!(orders[0], orders[1], "two sweeps shared an order");
    }

    /// A step checks its sweep leaves plus the random samples asked for.
    #[test]
    fn steps_mix_sweep_order_and_random_samples() {
        let device = MockDevice::new(0, 64 << 20);
        let m = manager(device);
        let shard = m
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&data((10 * LEAF) as usize)),
            )
            .unwrap();
        let mut sweep = None;
        let s = scrub_step(&m, &shard, &mut sweep, 4, 3).unwrap();
        assert_eq!(s.leaves, 7);
        assert!(s.seal_checked);
        let s = scrub_step(&m, &shard, &mut sweep, 4, 3).unwrap();
        assert!(!s.seal_checked);
        let s = scrub_step(&m, &shard, &mut sweep, 4, 3).unwrap();
        assert_eq!(s.leaves, 2 + 3);
        assert!(s.sweep_done);
    }

    /// Host-side seal state changed after sealing (here the seal time, which
    /// no leaf comparison covers) is caught by the scrubber's first step of
    /// a sweep, not only by the next explicit verification.
    #[test]
    fn scrubber_checks_the_seal_once_per_sweep() {
        let device = MockDevice::new(0, 64 << 20);
        let m = manager(device);
        let mut shard = m
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&data((8 * LEAF) as usize)),
            )
            .unwrap();
        shard.content.sealed_at_ns += 1;
        let mut sweep = None;
        let err = scrub_step(&m, &shard, &mut sweep, 4, 0).unwrap_err();
        assert!(matches!(err, VramError::SealInvalid { .. }), "{err}");

        // And through the running scrubber: reported, audited as scrub:K.
        let shard = Arc::new(shard);
        let (stats, seen) = scrub_until_a_failure(&m, &shard, |e| e.to_string());
        assert_eq!(stats.failures, 1);
        assert!(shard.is_compromised());
        assert!(seen[0].contains("seal"));
    }

    /// Runs a scrubber over `shard` until it reports a failure (or a minute
    /// passes); returns its stats and what `seen` made of each failure.
    fn scrub_until_a_failure<T: Send + 'static>(
        m: &VramManager,
        shard: &Arc<SealedShard>,
        seen: impl Fn(&VramError) -> T + Send + 'static,
    ) -> (ScrubStats, Vec<T>) {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&failures);
        let mut cfg = ScrubConfig::new(1 << 30);
        cfg.on_failure = Some(Box::new(move |e| sink.lock().unwrap().push(seen(e))));
        let scrubber = Scrubber::start(m, &[Arc::clone(shard)], cfg).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while scrubber.stats().failures == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stats = scrubber.stop();
        let seen = std::mem::take(&mut *failures.lock().unwrap());
        (stats, seen)
    }

    /// The running scrubber finds an altered seal itself (a shard no direct
    /// step has seen): the first step of its sweep checks the seal through
    /// the one verification entry point and reports `SealInvalid`.
    #[test]
    fn a_running_scrubber_reports_an_altered_seal() {
        let device = MockDevice::new(0, 64 << 20);
        let m = manager(device);
        let mut shard = m
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&data((8 * LEAF) as usize)),
            )
            .unwrap();
        shard.content.sealed_at_ns += 1;
        let shard = Arc::new(shard);
        let (stats, seen) =
            scrub_until_a_failure(&m, &shard, |e| matches!(e, VramError::SealInvalid { .. }));
        assert_eq!(stats.failures, 1);
        assert_eq!(stats.seal_checks, 0, "a failed seal check is not counted");
        assert!(shard.is_compromised());
        assert_eq!(seen, vec![true]);
    }

    /// The rate is a budget: a shard of one tiny leaf is not swept as fast
    /// as the byte count allows (before: tens of thousands of steps a second
    /// at 1 MiB/s, a whole core), but at most once per
    /// `MIN_STEP_CHARGE_BYTES / rate` seconds. Counted, not timed: a slow
    /// machine only lowers the count.
    #[test]
    fn a_tiny_shard_is_scrubbed_within_the_budget() {
        let device = MockDevice::new(0, 64 << 20);
        let m = manager(device);
        let shard = Arc::new(
            m.seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(b"tiny!\n"),
            )
            .unwrap(),
        );
        let rate = ScrubConfig::MIN_BYTES_PER_SECOND;
        let scrubber = Scrubber::start(&m, &[Arc::clone(&shard)], ScrubConfig::new(rate)).unwrap();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(1500));
        let stats = scrubber.stop();
        let secs = t0.elapsed().as_secs_f64();
        let steps_allowed = secs * rate as f64 / ScrubConfig::MIN_STEP_CHARGE_BYTES as f64 + 1.0;
        assert!(stats.sweeps >= 1, "{stats:?}");
        assert!(
            stats.sweeps as f64 <= steps_allowed,
            "{} sweeps of a one-leaf shard in {secs:.2} s at {rate} B/s: {stats:?}",
            stats.sweeps
        );
    }

    #[test]
    fn a_step_is_charged_at_least_its_leaves_and_the_floor() {
        let floor = ScrubConfig::MIN_STEP_CHARGE_BYTES;
        assert_eq!(step_charge(6, 1, 1 << 20), 1 << 20);
        assert_eq!(step_charge(6, 1, 4096), floor);
        assert_eq!(step_charge(5 << 20, 5, 1 << 20), 5 << 20);
        assert_eq!(step_charge(320 << 10, 5, 64 << 10), 320 << 10);
    }

    #[test]
    fn step_sizes_are_bounded() {
        let mut cfg = ScrubConfig::new(1 << 30);
        cfg.leaves_per_step = u32::MAX;
        assert!(cfg.validate().is_err());
        cfg.leaves_per_step = 4;
        cfg.samples_per_step = u32::MAX;
        assert!(cfg.validate().is_err());
        cfg.samples_per_step = 0;
        assert!(cfg.validate().is_ok());
        // 1 GiB at 1 GiB/s, 4 sweep leaves + 1 sample: 2 * 1.25 s.
        let secs = ScrubConfig::new(1 << 30).worst_case_detection_secs(1 << 30);
        assert!((secs - 2.5).abs() < 1e-9, "{secs}");
    }
}
