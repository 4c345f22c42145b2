//! `vram-validation` on arbitrary text: every validator agrees with an
//! independent statement of its grammar, accepted values round-trip, and
//! neither escaped text nor error messages can carry a control character.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vram_validation::{
    escape_for_log, format_bytes, parse_byte_size, validate_device_index, ModelRef, Sha256Hex,
    ShardId, ShardPosition, ValidationError, MAX_MODEL_REF_LEN, MAX_SHARDS, MAX_SHARD_ID_LEN,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();

    check_shard_id(s);
    check_model_ref(s);
    check_sha256(s);
    check_byte_size(s);
    // The first byte picks the display limit, so short and truncated
    // renderings are both explored.
    let max_chars = data.first().map_or(64, |b| usize::from(*b % 80));
    check_escape(s, max_chars);
    check_escape(s, usize::MAX);
    check_numbers(data);
});

/// Text safe for one log line: printable ASCII, plus the ellipsis that
/// `escape_for_log` uses to mark truncation.
fn assert_one_line(what: &str, out: &str) {
    assert!(
        out.chars().all(|c| matches!(c, ' '..='~' | '…')),
        "{what} is not printable ASCII: {out:?}"
    );
}

fn assert_error_safe(e: &ValidationError) {
    assert_one_line("error message", &e.to_string());
}

fn check_shard_id(s: &str) {
    let grammar = !s.is_empty()
        && s.len() <= MAX_SHARD_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ShardId::new(s) {
        Ok(id) => {
            assert!(grammar, "ShardId accepted {s:?}");
            assert_eq!(id.as_str(), s);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<ShardId>(&json).unwrap(), id);
        }
        Err(e) => {
            assert!(!grammar, "ShardId rejected {s:?}: {e}");
            assert_error_safe(&e);
            let json = serde_json::to_string(s).unwrap();
            assert!(serde_json::from_str::<ShardId>(&json).is_err());
        }
    }
}

fn starts_with_separator(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('\\')
}

fn check_model_ref(s: &str) {
    // Necessary conditions of the grammar (the full rules, with percent-
    // decoding, are in vram-validation/tests/model_refs.rs's table).
    let necessary = !s.is_empty()
        && s.len() <= MAX_MODEL_REF_LEN
        && !s.chars().any(char::is_control)
        && !s.chars().any(|c| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        && !starts_with_separator(s)
        && !s.split(['/', '\\', ':']).any(|seg| seg == "..");
    match ModelRef::new(s) {
        Ok(r) => {
            assert!(necessary, "ModelRef accepted {s:?}");
            assert_eq!(r.as_str(), s);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<ModelRef>(&json).unwrap(), r);
        }
        Err(e) => assert_error_safe(&e),
    }
    match vram_validation::ExpectedDigest::parse(s) {
        Ok(d) => assert_eq!(d.sha256.as_str().len(), 64),
        Err(e) => assert_error_safe(&e),
    }
    if let Err(e) = vram_validation::ExpectedDigest::parse_file(s) {
        assert_error_safe(&e);
    }
}

fn check_sha256(s: &str) {
    let grammar = s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match Sha256Hex::new(s) {
        Ok(h) => {
            assert!(grammar, "Sha256Hex accepted {s:?}");
            assert_eq!(h.as_str(), s.to_ascii_lowercase());
            let bytes = h.to_bytes();
            for (i, b) in bytes.iter().enumerate() {
                let pair = &s[2 * i..2 * i + 2];
                assert_eq!(u8::from_str_radix(pair, 16).unwrap(), *b);
            }
            assert_eq!(Sha256Hex::from_bytes(&bytes), h);
        }
        Err(e) => {
            assert!(!grammar, "Sha256Hex rejected {s:?}: {e}");
            assert_error_safe(&e);
        }
    }
}

/// The size grammar, stated independently: `DIGITS [" "] [UNIT]`.
fn byte_size_spec(s: &str) -> Option<u64> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    let unit = match rest.strip_prefix(' ') {
        Some("") => return None,
        Some(u) => u,
        None => rest,
    };
    let factor: u128 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 20 {
        return None;
    }
    let value: u128 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    u64::try_from(value.checked_mul(factor)?).ok()
}

fn check_byte_size(s: &str) {
    match (parse_byte_size(s), byte_size_spec(s)) {
        (Ok(n), Some(want)) => {
            assert_eq!(n, want, "parse_byte_size({s:?})");
            assert_one_line("format_bytes", &format_bytes(n));
            assert_eq!(parse_byte_size(&n.to_string()), Ok(n));
        }
        (Err(e), None) => {
            assert!(matches!(e, ValidationError::BadSize { .. }), "{e:?}");
            assert_error_safe(&e);
        }
        (got, want) => panic!("parse_byte_size({s:?}) = {got:?}, grammar says {want:?}"),
    }
}

/// Reverses `escape_for_log`'s escapes; `None` if `out` is not a well-formed
/// escaped string.
fn unescape(out: &str) -> Option<String> {
    let mut result = String::new();
    let mut chars = out.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            result.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => result.push('\\'),
            '"' => result.push('"'),
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let mut hex = String::new();
                loop {
                    match chars.next()? {
                        '}' => break,
                        h => hex.push(h),
                    }
                }
                result.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(result)
}

fn check_escape(s: &str, max_chars: usize) {
    let out = escape_for_log(s, max_chars);
    let shown_end = s
        .char_indices()
        .nth(max_chars)
        .map_or(s.len(), |(offset, _)| offset);
    let (escaped, suffix) = match out.find('…') {
        Some(at) => out.split_at(at),
        None => (out.as_str(), ""),
    };
    assert_one_line("escape_for_log", escaped);
    assert!(!escaped.contains('…'));
    // Injective on what it shows: the shown prefix comes back exactly.
    assert_eq!(
        unescape(escaped).as_deref(),
        Some(&s[..shown_end]),
        "escape_for_log({s:?}, {max_chars}) = {out:?}"
    );
    if shown_end == s.len() {
        assert_eq!(suffix, "");
    } else {
        assert_eq!(suffix, format!("…({} more bytes)", s.len() - shown_end));
    }
}

fn check_numbers(data: &[u8]) {
    let word = |i: usize| {
        let mut b = [0u8; 4];
        for (j, slot) in b.iter_mut().enumerate() {
            *slot = data.get(i + j).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    };
    let (a, b) = (word(0), word(4));
    // Small values as often as large ones.
    let (a_small, b_small) = (a % 2048, b % 2048);
    for (index, count) in [(a, b), (a_small, b_small)] {
        match validate_device_index(index, count) {
            Ok(i) => assert!(i == index && index < count),
            Err(e) => {
                assert!(index >= count);
                assert_error_safe(&e);
            }
        }
        match ShardPosition::new(index, count) {
            Ok(p) => {
                assert!(count >= 1 && count <= MAX_SHARDS && index < count);
                assert_eq!((u32::from(p.index()), u32::from(p.total())), (index, count));
                let json = serde_json::to_string(&p).unwrap();
                assert_eq!(serde_json::from_str::<ShardPosition>(&json).unwrap(), p);
            }
            Err(e) => {
                assert!(count == 0 || count > MAX_SHARDS || index >= count);
                assert_error_safe(&e);
            }
        }
    }
    let n = u64::from(a) << 32 | u64::from(b);
    assert_one_line("format_bytes", &format_bytes(n));
    assert_eq!(parse_byte_size(&n.to_string()), Ok(n));
}
