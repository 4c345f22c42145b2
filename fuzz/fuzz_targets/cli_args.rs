//! The `vram` CLI's argument parsing, run on the CLI's own code: the
//! `vram-cli` library, the very code the `vram` binary runs. Calls what the
//! commands call on flag values: `args::device_arg` (`--device`),
//! `args::verify_arg` (`--verify`), `args::size_arg` (`--size` and friends)
//! and `args::leaf_arg` (`--leaf-size`). It also runs clap over the input
//! split into arguments at NUL bytes, which exercises clap's own consistency
//! checks on the command definition (debug assertions are on in fuzz builds).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vram_cli::{args, cli, exit};
use vram_worker::DeviceSpec;
use vram_crypto::LeafSize;
use vram_validation::parse_byte_size;
use vram_residency::VerifyPolicy;

/// A message safe for one terminal line: printable ASCII plus the ellipsis
/// `escape_for_log` uses for truncation.
fn assert_one_line(msg: &str) {
    assert!(
        msg.chars().all(|c| matches!(c, ' '..='~' | '…')),
        "message is not printable ASCII: {msg:?}"
    );
}

/// `N` as the CLI grammar writes it: 1 to `max_digits` ASCII digits.
fn digits(s: &str, max_digits: usize) -> Option<u32> {
    (!s.is_empty() && s.len() <= max_digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn check_device(s: &str) {
    let want = match s {
        "auto" => Some(DeviceSpec::Auto),
        "mock" => Some(DeviceSpec::Mock),
        "cuda" => Some(DeviceSpec::AllCuda),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| digits(n, 4))
            .map(DeviceSpec::Cuda),
    };
    match args::device_arg(s) {
        Ok(spec) => assert_eq!(Some(spec), want, "--device {s:?}"),
        Err(e) => {
            assert_eq!(want, None, "--device {s:?} refused: {}", e.message);
            assert_eq!(e.code, exit::USAGE);
            assert_one_line(&e.message);
        }
    }
}

fn check_verify(s: &str) {
    let want = if s == "full" {
        Some(VerifyPolicy::Full)
    } else {
        s.strip_prefix("sampled:")
            .and_then(|k| digits(k, 10))
            .filter(|k| *k > 0)
            .map(|leaves| VerifyPolicy::Sampled { leaves })
    };
    match args::verify_arg(s) {
        Ok(p) => assert_eq!(Some(p), want, "--verify {s:?}"),
        Err(e) => {
            assert_eq!(want, None, "--verify {s:?} refused: {}", e.message);
            assert_eq!(e.code, exit::USAGE);
            assert_one_line(&e.message);
        }
    }
}

fn check_sizes(s: &str) {
    let size = parse_byte_size(s);
    match args::size_arg("--size", s) {
        Ok(n) => assert_eq!(size, Ok(n)),
        Err(e) => {
            assert!(size.is_err());
            assert_eq!(e.code, exit::USAGE);
            assert_one_line(&e.message);
        }
    }
    let leaf = size.ok().and_then(|n| LeafSize::new(n).ok());
    match args::leaf_arg(Some(s)) {
        Ok(l) => {
            // A value given is never read as "absent".
            assert_eq!(l, leaf, "--leaf-size {s:?}");
            let l = l.map_or(0, LeafSize::bytes);
            assert!(l.is_power_of_two());
            assert!((4096..=1 << 30).contains(&l));
        }
        Err(e) => {
            assert_eq!(leaf, None, "--leaf-size {s:?} refused: {}", e.message);
            assert_eq!(e.code, exit::USAGE);
            assert_one_line(&e.message);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    check_device(s);
    check_verify(s);
    check_sizes(s);

    // The whole command line: arguments separated by NUL bytes.
    let args = std::iter::once("vram").chain(s.split('\0'));
    if let Ok(parsed) = cli::Cli::parse_args(args) {
        let _ = format!("{parsed:?}");
    }
});
