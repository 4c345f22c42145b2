//! The GGUF corruption demonstration (`examples/gguf_corruption_demo.rs`),
//! run as its `main` runs it: one request answered, one byte of a tensor
//! flipped in device memory, the next request refused with the tensor and
//! its byte range named.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../examples/gguf_corruption_demo.rs"]
mod demo;

#[test]
fn the_demo_catches_the_corrupt_byte_and_names_the_tensor() {
    let mut out = Vec::new();
    let result = demo::run(None, "mock", &mut out);
    let shown = String::from_utf8(out).unwrap();
    eprintln!("{shown}");
    let message = result.unwrap_or_else(|e| panic!("{e}\n{shown}"));
    // `blk.1.ffn_down.weight, bytes A..B of N`
    let named = format!("{}, bytes ", demo::TENSOR);
    let at = message
        .find(&named)
        .unwrap_or_else(|| panic!("no `{named}` in {message}"));
    let rest = &message[at + named.len()..];
    let (range, total) = rest.split_once(" of ").unwrap();
    let (a, b) = range.split_once("..").unwrap();
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    let total: u64 = total
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(a < b && b <= total, "{message}");
    assert_eq!(
        message.matches(".weight, bytes ").count(),
        1,
        "the corrupt tensor alone is named: {message}"
    );
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 5, "{shown}");
    assert!(lines.iter().all(|l| l.starts_with("[ ok ]")), "{shown}");
    assert!(lines[4].contains("request 2 refused"), "{shown}");
}
