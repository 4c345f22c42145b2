//! Property tests: the grammar holds for everything accepted, and nothing panics.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use proptest::prelude::*;
use vram_validation::{
    escape_for_log, escape_line_field, parse_byte_size, validate_device_index, ModelRef, Sha256Hex,
    ShardId, ShardPosition, ValidationError, MAX_MODEL_REF_LEN, MAX_SHARD_ID_LEN,
};

fn error_text_is_safe(err: &ValidationError) -> bool {
    let text = err.to_string();
    !text.chars().any(char::is_control) && text.chars().all(|c| c.is_ascii() || c == '…')
}

fn shard_id_grammar(s: &str) -> bool {
    (1..=MAX_SHARD_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The inverse of `escape_line_field`: `\\`, `\n`, `\r`, `\u{hex}`.
fn unescape_line(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn accepted_shard_ids_satisfy_grammar(s in any::<String>()) {
        match ShardId::new(&s) {
            Ok(id) => {
                prop_assert!(shard_id_grammar(id.as_str()));
                prop_assert_eq!(id.as_str(), s.as_str());
            }
            Err(e) => {
                prop_assert!(!shard_id_grammar(&s));
                prop_assert!(error_text_is_safe(&e), "{:?}", e.to_string());
            }
        }
    }

    #[test]
    fn grammar_strings_are_accepted(s in "[A-Za-z0-9_-]{1,256}") {
        let id = ShardId::new(&s).unwrap();
        let back: ShardId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        prop_assert_eq!(back, id);
    }

    #[test]
    fn any_forbidden_char_is_rejected(
        prefix in "[A-Za-z0-9_-]{0,100}",
        bad in any::<char>().prop_filter("forbidden", |c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')),
        suffix in "[A-Za-z0-9_-]{0,100}",
    ) {
        let s = format!("{prefix}{bad}{suffix}");
        let err = ShardId::new(&s).unwrap_err();
        let at_prefix_end =
            matches!(err, ValidationError::ForbiddenChar { position, .. } if position == prefix.len());
        prop_assert!(at_prefix_end, "{:?}", err);
        prop_assert!(error_text_is_safe(&err));
    }

    #[test]
    fn model_ref_never_panics_and_accepted_satisfy_grammar(s in any::<String>()) {
        match ModelRef::new(&s) {
            Ok(r) => {
                let t = r.as_str();
                prop_assert!((1..=MAX_MODEL_REF_LEN).contains(&t.len()));
                prop_assert!(!t.chars().any(char::is_control));
                prop_assert!(!t.split(['/', '\\', ':']).any(|seg| seg == ".."));
                let file_uri = t.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("file:///"));
                prop_assert!(file_uri || (!t.starts_with('/') && !t.starts_with('\\')));
            }
            Err(e) => prop_assert!(error_text_is_safe(&e), "{:?}", e.to_string()),
        }
    }

    #[test]
    fn model_ref_with_dotdot_segment_is_rejected(
        a in "[a-z]{0,10}",
        sep in prop::sample::select(vec!['/', '\\', ':']),
        b in "[a-z]{0,10}",
    ) {
        let s = format!("{a}{sep}..{sep}{b}");
        prop_assert!(ModelRef::new(&s).is_err());
    }

    #[test]
    fn nothing_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let s = String::from_utf8_lossy(&bytes);
        for err in [
            ShardId::new(&s).err(),
            ModelRef::new(&s).err(),
            Sha256Hex::new(&s).err(),
            parse_byte_size(&s).err(),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(error_text_is_safe(&err), "{:?}", err.to_string());
        }
        let _ = serde_json::from_slice::<ShardId>(&bytes);
        let _ = serde_json::from_slice::<ShardPosition>(&bytes);
    }

    #[test]
    fn escape_output_is_one_safe_line(s in any::<String>(), max in 0usize..200) {
        let out = escape_for_log(&s, max);
        prop_assert!(!out.chars().any(char::is_control));
        prop_assert!(out.chars().all(|c| c.is_ascii() || c == '…'));
    }

    /// An output-line field is printable ASCII, unchanged exactly when it
    /// needed no escape, and decodes back to its input: no two names print
    /// the same, and a name cannot imitate an escape.
    #[test]
    fn line_fields_are_printable_and_decode_back(s in any::<String>()) {
        let (out, escaped) = escape_line_field(&s);
        prop_assert!(out.chars().all(|c| matches!(c, ' '..='~')), "{:?}", out);
        prop_assert_eq!(escaped, out != s);
        prop_assert_eq!(unescape_line(&out), Some(s));
    }

    #[test]
    fn sha256_round_trips(bytes in any::<[u8; 32]>(), upper in any::<bool>()) {
        let hex = Sha256Hex::from_bytes(&bytes);
        let text = if upper { hex.as_str().to_ascii_uppercase() } else { hex.to_string() };
        let parsed = Sha256Hex::new(&text).unwrap();
        prop_assert_eq!(parsed.to_bytes(), bytes);
        prop_assert_eq!(&parsed, &hex);
    }

    #[test]
    fn parsed_sizes_match_arithmetic(n in 0u64..(1 << 20), unit in 0usize..9) {
        let (suffix, factor) = [("", 1u64), ("K", 1 << 10), ("KiB", 1 << 10), ("M", 1 << 20), ("MiB", 1 << 20), ("G", 1 << 30), ("GiB", 1 << 30), ("KB", 1000), ("GB", 1_000_000_000)][unit];
        prop_assert_eq!(parse_byte_size(&format!("{n}{suffix}")), Ok(n * factor));
        prop_assert_eq!(parse_byte_size(&format!("{n} {suffix}")).ok(), if suffix.is_empty() { None } else { Some(n * factor) });
    }

    #[test]
    fn device_index_and_position_rules(index in any::<u32>(), count in any::<u32>()) {
        prop_assert_eq!(validate_device_index(index, count).is_ok(), index < count);
        let ok = (1..=1024).contains(&count) && index < count;
        match ShardPosition::new(index, count) {
            Ok(p) => {
                prop_assert!(ok);
                prop_assert_eq!((u32::from(p.index()), u32::from(p.total())), (index, count));
            }
            Err(e) => {
                prop_assert!(!ok);
                prop_assert!(error_text_is_safe(&e));
            }
        }
    }
}

#[test]
fn sha256_upper_case_is_normalised() {
    let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    let d = Sha256Hex::new(upper).unwrap();
    assert_eq!(d.as_str(), upper.to_ascii_lowercase());
    assert_eq!(d, Sha256Hex::new(&upper.to_ascii_lowercase()).unwrap());
    assert_eq!(d.to_bytes()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(json, format!("\"{}\"", upper.to_ascii_lowercase()));
}

#[test]
fn shard_position_serde_validates() {
    let p: ShardPosition = serde_json::from_str(r#"{"index":3,"total":8}"#).unwrap();
    assert_eq!((p.index(), p.total()), (3, 8));
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"index":3,"total":8}"#
    );
    for bad in [
        r#"{"index":8,"total":8}"#,
        r#"{"index":0,"total":0}"#,
        r#"{"index":0,"total":2000}"#,
        r#"{"index":0,"total":1,"extra":1}"#,
        r#"{"index":-1,"total":1}"#,
    ] {
        assert!(serde_json::from_str::<ShardPosition>(bad).is_err(), "{bad}");
    }
    assert_eq!(ShardPosition::SINGLE.to_string(), "0/1");
}

#[test]
fn traits_round_trip() {
    let id: ShardId = "abc".parse().unwrap();
    assert_eq!(id.as_ref(), "abc");
    assert_eq!(String::from(id.clone()), "abc");
    assert_eq!(ShardId::try_from("abc".to_string()).unwrap(), id);
    assert!("a b".parse::<ShardId>().is_err());
    let r: ModelRef = "file:x".parse().unwrap();
    assert_eq!(serde_json::to_string(&r).unwrap(), "\"file:x\"");
}
