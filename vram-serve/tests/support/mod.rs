//! What the tests share: a small HTTP/1.1 client over loopback (one
//! request per connection), the `vram-serve` binary started on an ephemeral
//! port, the tiny BERT snapshot vram-embed's tests write, and a tiny llama
//! GGUF with a byte-level BPE tokenizer and a chat template (vram-llm's
//! tests' writer and vocabulary, see [`text_model`]).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../../../vram-embed/tests/common/mod.rs"]
pub(crate) mod snapshot;

#[path = "../../../vram-llm/tests/common/writer.rs"]
pub(crate) mod gguf_writer;

#[path = "../../../vram-llm/tests/scripted/mod.rs"]
pub(crate) mod vocabulary;
#[path = "../../../vram-cli/tests/common/wait.rs"]
mod wait;

pub(crate) mod text_model;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for the server to seal and listen, or to answer.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// One answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        // A server may answer (413) and close before reading it all.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

pub(crate) fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Reply {
    request(addr, "POST", path, Some(body.to_string().as_bytes()))
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
}

/// The binary, serving on an ephemeral loopback port; killed when dropped.
pub(crate) struct Serving {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// `vram-serve --device mock --listen 127.0.0.1:0 ARGS...`, once it says
/// where it listens.
pub(crate) fn serve(args: &[&str]) -> Serving {
    serve_in(&std::env::temp_dir(), args)
}

/// [`serve`] from the working directory `cwd` (a model named relative to it).
pub(crate) fn serve_in(cwd: &std::path::Path, args: &[&str]) -> Serving {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("vram-serve"));
    command
        .current_dir(cwd)
        .args(["--device", "mock", "--listen", "127.0.0.1:0"])
        .args(args);
    spawn(command)
}

/// `command` (a `vram-serve` command line) started, once it says where it
/// listens.
pub(crate) fn spawn(mut command: Command) -> Serving {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("vram-serve: listening on http://") {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(addr) => Serving {
            child,
            addr,
            stderr: Some(stderr),
        },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!(
                "vram-serve did not start ({status}): {}",
                stderr.join().unwrap()
            );
        }
    }
}

/// Runs `command` (a `vram-serve` command line expected to exit by itself)
/// to its end, for at most `within`: past it the process is killed and the
/// test fails with what it printed. No wait on a child is without a bound.
pub(crate) fn output_within(command: Command, within: Duration) -> std::process::Output {
    try_output_within(command, within).unwrap()
}

/// [`output_within`], with a program that cannot be started as an error.
pub(crate) fn try_output_within(
    mut command: Command,
    within: Duration,
) -> std::io::Result<std::process::Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    Ok(wait::wait_within(child, within))
}

impl Serving {
    /// Waits (bounded) for the process to exit; its code and stderr. Past
    /// `within` the process is killed and the test fails with its stderr.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> (Option<i32>, String) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap())
                    .unwrap_or_default();
                return (status.code(), stderr);
            }
            if start.elapsed() >= within {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                let stderr = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap())
                    .unwrap_or_default();
                panic!("vram-serve still running after {within:?}, killed ({status}); stderr: {stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit.
    pub(crate) fn terminate(&mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let mut kill = Command::new("kill");
        kill.args(["-TERM", &pid]);
        let out = output_within(kill, PATIENCE);
        assert!(out.status.success(), "{out:?}");
        self.wait_exit(PATIENCE)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
