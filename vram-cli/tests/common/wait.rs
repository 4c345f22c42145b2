//! The one bounded wait on a child process for the tests of vram-cli and
//! vram-serve (included by path there): no test waits on a process without
//! a time limit.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::io::Read;
use std::time::{Duration, Instant};

/// Waits for `child` (its stdout and stderr piped, or not) for at most
/// `within`: past it the process is killed and the test fails with what it
/// printed.
pub(crate) fn wait_within(
    mut child: std::process::Child,
    within: Duration,
) -> std::process::Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() >= within {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!(
                "still running after {within:?}, killed ({status}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
