//! The background thread that makes [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval)
//! a bound on how long a written record stays unflushed.
//!
//! The thread sleeps on a condvar until the log reports a record waiting to be
//! flushed, sleeps one more period (so that the records written meanwhile share
//! the flush), then calls the flush function. It holds only a [`Weak`]
//! reference to what it flushes, upgraded for the length of one flush, so it
//! never keeps a log alive; dropping the [`Flusher`] tells it to stop and joins
//! it, which waits at most for one flush in progress.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Name of the flush threads.
pub(crate) const THREAD_NAME: &str = "vram-audit-flush";

/// Shortest period between two background flushes, so that `Interval(0)` and a
/// storage that keeps failing cannot make the thread spin.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// Longest wait between two retries of a failing flush (unless the period is
/// longer).
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Flags {
    /// The owner is gone or closing: exit.
    stop: bool,
    /// A record may be waiting to be flushed.
    pending: bool,
}

#[derive(Debug, Default)]
struct Signal {
    flags: Mutex<Flags>,
    wake: Condvar,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, Flags> {
        // Two booleans, consistent at every step: a panic elsewhere cannot
        // leave them half-updated.
        self.flags.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_pending(&self) {
        let mut flags = self.lock();
        if !flags.pending {
            flags.pending = true;
            self.wake.notify_one();
        }
    }
}

/// Handle of one background flush thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Flusher {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
    /// Dropped by the thread when it exits.
    alive: Weak<()>,
}

impl Flusher {
    /// Starts a thread that calls `flush(target)` about `period` after each
    /// [`Self::note_pending`] and, while `flush` returns false (it failed),
    /// again every `period`.
    pub(crate) fn spawn<T: Send + Sync + 'static>(
        period: Duration,
        target: Weak<T>,
        flush: fn(&T) -> bool,
    ) -> io::Result<Self> {
        let signal = Arc::new(Signal::default());
        let token = Arc::new(());
        let alive = Arc::downgrade(&token);
        let thread_signal = Arc::clone(&signal);
        let period = period.max(MIN_PERIOD);
        let thread = thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let _token = token;
                run(&thread_signal, period, &target, flush);
            })?;
        Ok(Self {
            signal,
            thread: Some(thread),
            alive,
        })
    }

    /// Says that a record was written and not flushed. Cheap when the thread
    /// already knows.
    pub(crate) fn note_pending(&self) {
        self.signal.set_pending();
    }

    /// A reference that stops upgrading once the thread has exited.
    pub(crate) fn liveness(&self) -> Weak<()> {
        self.alive.clone()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        {
            let mut flags = self.signal.lock();
            flags.stop = true;
            self.signal.wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("audit log flush thread panicked");
            }
        }
    }
}

fn run<T>(signal: &Signal, period: Duration, target: &Weak<T>, flush: fn(&T) -> bool) {
    let mut wait = period;
    loop {
        {
            let flags = signal.lock();
            let flags = signal
                .wake
                .wait_while(flags, |f| !f.stop && !f.pending)
                .unwrap_or_else(PoisonError::into_inner);
            // Let the records written during the period share one flush.
            let (mut flags, _) = signal
                .wake
                .wait_timeout_while(flags, wait, |f| !f.stop)
                .unwrap_or_else(PoisonError::into_inner);
            if flags.stop {
                return;
            }
            // Cleared before flushing: a record written after this sets it
            // again, so none is left waiting for a wake-up that never comes.
            flags.pending = false;
        }
        let Some(target) = target.upgrade() else {
            return;
        };
        let flushed = flush(&target);
        drop(target);
        if flushed {
            wait = period;
        } else {
            // Storage that keeps failing is retried less and less often (up
            // to once per `MAX_BACKOFF`, or per period if that is longer), so
            // it is not flooded and neither are the logs.
            wait = wait.saturating_mul(2).min(MAX_BACKOFF.max(period));
            signal.set_pending();
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn flushes_after_a_note_and_retries_a_failure() {
        // Fails the first flush, succeeds afterwards.
        let calls = Arc::new(AtomicU32::new(0));
        let flusher = Flusher::spawn(Duration::from_millis(5), Arc::downgrade(&calls), |c| {
            c.fetch_add(1, Ordering::SeqCst) >= 1
        })
        .unwrap();
        flusher.note_pending();
        wait_for("a retried flush", || calls.load(Ordering::SeqCst) >= 2);
        let alive = flusher.liveness();
        assert!(alive.upgrade().is_some());
        drop(flusher);
        assert!(alive.upgrade().is_none(), "thread still running after drop");
    }

    #[test]
    fn exits_when_the_target_is_gone() {
        let target = Arc::new(AtomicU32::new(0));
        let flusher =
            Flusher::spawn(Duration::from_millis(1), Arc::downgrade(&target), |_| true).unwrap();
        let alive = flusher.liveness();
        drop(target);
        flusher.note_pending();
        wait_for("the thread to exit", || alive.upgrade().is_none());
        drop(flusher);
    }
}
