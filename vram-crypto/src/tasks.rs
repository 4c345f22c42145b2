//! Running a few tasks at once on scoped threads without ever panicking when
//! the OS refuses a thread.

use std::sync::{Mutex, PoisonError};

/// Runs every task to completion, in parallel on up to `tasks.len()` threads
/// (the calling thread included), and returns when all are done.
///
/// Tasks are taken from one shared list by the calling thread and the helper
/// threads, so a helper the OS will not start costs speed, never a task: the
/// calling thread then runs what is left. (`std::thread::Scope::spawn` would
/// panic instead.) A panicking task propagates its panic to the caller, as a
/// scoped thread's panic does.
pub(crate) fn run_tasks<'a>(tasks: Vec<Box<dyn FnOnce() + Send + 'a>>) {
    let helpers = tasks.len().saturating_sub(1);
    let queue = Mutex::new(tasks);
    let work = || loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match next {
            Some(task) => task(),
            None => break,
        }
    };
    std::thread::scope(|s| {
        for _ in 0..helpers {
            if std::thread::Builder::new()
                .name("vram-hash".into())
                .spawn_scoped(s, work)
                .is_err()
            {
                tracing::warn!("could not start a hashing thread; running its work here");
                break;
            }
        }
        work();
    });
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_exactly_once() {
        for n in [0usize, 1, 2, 7] {
            let ran: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            let tasks: Vec<Box<dyn FnOnce() + Send + '_>> = ran
                .iter()
                .map(|r| {
                    Box::new(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    }) as Box<dyn FnOnce() + Send + '_>
                })
                .collect();
            run_tasks(tasks);
            assert!(ran.iter().all(|r| r.load(Ordering::SeqCst) == 1), "n = {n}");
        }
    }
}
