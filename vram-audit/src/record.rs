//! The record line format: encoding, authentication and parsing.
//!
//! A record is `PREFIX ,"mac":"<64 hex>"}` followed by `\n`, where PREFIX is
//! `{"v":2,"log":"<32 hex>","seq":N,"ts":"...","worker":"...","event":{...},"prev":"<64 hex>"`
//! (format v2; a v1 record has no `"log"` field and starts `{"v":1,"seq":`).
//! The MAC is HMAC-SHA256 over PREFIX exactly; because the suffix has a fixed
//! length (74 bytes), PREFIX is found by cutting those bytes off the end of the
//! line, with no parsing. The record's hash is SHA-256 of the whole line
//! without its `\n`. See docs/audit-log.md.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use ring::{digest, hmac};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{AuditError, AuditEvent, AuditKey, RecordedEvent, UnknownEvent};

/// `prev` of the first record of a chain.
pub(crate) const GENESIS_PREV: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";
/// The record format version new logs are written in: the `"v"` of their
/// records, and the `format` of their genesis record (`log_created`).
///
/// Format 2 binds the log's id (from its genesis record) into every record's
/// MAC input; format 1 logs (no identity) still verify, and a format 1 log is
/// continued in format 1.
pub const RECORD_FORMAT: u32 = 2;
/// Length of a log id: 128 bits as lowercase hex.
pub(crate) const LOG_ID_HEX_LEN: usize = 32;
/// Longest record line accepted, without its `\n`.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

const VERSION_TAG: &[u8] = b"{\"v\":";
const VERSION_1: &[u8] = b"{\"v\":1,";
const VERSION_2: &[u8] = b"{\"v\":2,";
const LOG_OPEN: &[u8] = b"\"log\":\"";
const MAC_OPEN: &[u8] = b",\"mac\":\"";
const MAC_CLOSE: &[u8] = b"\"}";
const HEX_LEN: usize = 64;

/// Lowercase hex of `bytes` (the workspace's one codec).
pub(crate) use vram_validation::hex::encode as hex;

/// Decodes exactly 32 bytes from 64 lowercase hex digits.
fn unhex32(text: &[u8]) -> Option<[u8; 32]> {
    vram_validation::hex::decode_lower(text)
}

/// True for 64 lowercase hex digits.
pub(crate) fn is_hash_hex(text: &str) -> bool {
    unhex32(text.as_bytes()).is_some()
}

/// SHA-256 of a record line (without `\n`), as hex: the next record's `prev`.
pub(crate) fn line_hash(line: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, line).as_ref())
}

/// True for a log id: 32 lowercase hex digits.
pub(crate) fn is_log_id(text: &str) -> bool {
    vram_validation::hex::decode_lower::<{ LOG_ID_HEX_LEN / 2 }>(text).is_some()
}

/// Longest prefix [`begins_like_record`] needs.
pub(crate) const RECORD_START_MAX: u64 = 64;

/// True when `head` (the first bytes of a file, at most [`RECORD_START_MAX`])
/// begins like a record line of ours, up to its sequence number (`first`: a
/// chain's first record, seq 1). Used on a file holding only an incomplete
/// line: an interrupted first write begins like this, a stranger's file does not.
pub(crate) fn begins_like_record(head: &[u8], first: bool) -> bool {
    let seq: &[u8] = if first { b"\"seq\":1," } else { b"\"seq\":" };
    if let Some(rest) = head.strip_prefix(VERSION_1) {
        return rest.starts_with(seq);
    }
    let Some(rest) = head
        .strip_prefix(VERSION_2)
        .and_then(|r| r.strip_prefix(LOG_OPEN))
    else {
        return false;
    };
    let Some((id, rest)) = rest.split_at_checked(LOG_ID_HEX_LEN) else {
        return false;
    };
    std::str::from_utf8(id).is_ok_and(is_log_id)
        && rest
            .strip_prefix(b"\",")
            .is_some_and(|r| r.starts_with(seq))
}

/// Encodes a record; the returned line ends in `\n`. With a `log_id` the
/// record is format 2 (the id is part of the MAC input); without, format 1.
pub(crate) fn encode_line(
    key: &AuditKey,
    log_id: Option<&str>,
    seq: u64,
    ts: &str,
    worker: &str,
    event: &AuditEvent,
    prev: &str,
) -> Result<Vec<u8>, AuditError> {
    let enc = |e: serde_json::Error| AuditError::Encode {
        reason: e.to_string(),
    };
    let ts = serde_json::to_string(ts).map_err(enc)?;
    let worker = serde_json::to_string(worker).map_err(enc)?;
    let event = serde_json::to_string(event).map_err(enc)?;
    let mut line = Vec::with_capacity(event.len().saturating_add(worker.len()).saturating_add(256));
    match log_id {
        Some(id) => {
            if !is_log_id(id) {
                return Err(AuditError::Encode {
                    reason: "log id is not 32 lowercase hex digits".into(),
                });
            }
            line.extend_from_slice(VERSION_2);
            line.extend_from_slice(LOG_OPEN);
            line.extend_from_slice(id.as_bytes());
            line.extend_from_slice(b"\",");
        }
        None => line.extend_from_slice(VERSION_1),
    }
    line.extend_from_slice(format!("\"seq\":{seq},\"ts\":{ts},\"worker\":{worker}").as_bytes());
    line.extend_from_slice(b",\"event\":");
    line.extend_from_slice(event.as_bytes());
    line.extend_from_slice(b",\"prev\":\"");
    line.extend_from_slice(prev.as_bytes());
    line.push(b'"');
    let mac = hmac::sign(key.hmac_key(), &line);
    line.extend_from_slice(MAC_OPEN);
    line.extend_from_slice(hex(mac.as_ref()).as_bytes());
    line.extend_from_slice(MAC_CLOSE);
    if line.len() > MAX_LINE_BYTES {
        return Err(AuditError::RecordTooLarge {
            bytes: line.len(),
            max: MAX_LINE_BYTES,
        });
    }
    line.push(b'\n');
    Ok(line)
}

/// A record whose MAC verified and whose fields parsed.
#[derive(Debug)]
pub(crate) struct Authentic {
    /// Record format version (1 or 2).
    pub(crate) version: u32,
    /// The log id a format 2 record is bound to; `None` in format 1.
    pub(crate) log_id: Option<String>,
    pub(crate) seq: u64,
    pub(crate) prev: String,
    /// The event; of a type this build does not know, when a newer writer
    /// wrote it.
    pub(crate) event: RecordedEvent,
    /// SHA-256 of the line.
    pub(crate) hash: String,
}

/// Why a line is not an authentic record.
#[derive(Debug)]
pub(crate) enum LineProblem {
    /// `"v"` is neither 1 nor 2.
    UnknownVersion,
    /// Not a well-formed record.
    Malformed(String),
    /// Well-formed, but the MAC does not match.
    BadMac,
}

/// A record's fields, its event read as `E`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // `ts`, `worker` and `mac` are checked for presence and type only.
struct Wire<E> {
    v: u64,
    #[serde(default)]
    log: Option<String>,
    seq: u64,
    ts: String,
    worker: String,
    event: E,
    prev: String,
    mac: String,
}

impl<E> Wire<E> {
    /// The event, and the other fields.
    fn split(self) -> (Wire<()>, E) {
        let Self {
            v,
            log,
            seq,
            ts,
            worker,
            event,
            prev,
            mac,
        } = self;
        let rest = Wire {
            v,
            log,
            seq,
            ts,
            worker,
            event: (),
            prev,
            mac,
        };
        (rest, event)
    }
}

/// Reads a line as `Known` (its event an [`AuditEvent`]), or, when that fails
/// and the line reads as `Raw` (the same fields, the event kept as written)
/// whose event is of a type this build does not know, as what `unknown`
/// makes of it. A line that does not read as `Raw` either (bad JSON, an
/// unknown or missing field outside the event) gets `Raw`'s error, which
/// names that problem rather than the event's type; a line whose event is of
/// a known type (or no event) gets the first error (a missing or ill-typed
/// field).
///
/// The second reading happens only for lines the first refuses, so records
/// of known types are parsed once, as before.
pub(crate) fn parse_forward_compatible<Known, Raw, Out>(
    line: &[u8],
    known: impl FnOnce(Known) -> Out,
    unknown: impl FnOnce(Raw) -> Option<Out>,
) -> Result<Out, serde_json::Error>
where
    Known: DeserializeOwned,
    Raw: DeserializeOwned,
{
    let error = match serde_json::from_slice::<Known>(line) {
        Ok(parsed) => return Ok(known(parsed)),
        Err(e) => e,
    };
    match serde_json::from_slice::<Raw>(line) {
        Ok(raw) => unknown(raw).ok_or(error),
        Err(not_a_record) => Err(not_a_record),
    }
}

fn truncate_reason(text: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Checks a line (without `\n`): structure, then MAC, then fields.
pub(crate) fn authenticate(key: &AuditKey, line: &[u8]) -> Result<Authentic, LineProblem> {
    authenticate_with(Some(key), line)
}

/// [`authenticate`], or without a key (a verification with the public key
/// only): structure and fields, the MAC's shape but not its value.
pub(crate) fn authenticate_with(
    key: Option<&AuditKey>,
    line: &[u8],
) -> Result<Authentic, LineProblem> {
    if !line.starts_with(VERSION_TAG) {
        return Err(LineProblem::Malformed(
            "not an audit record: does not start with {\"v\":".into(),
        ));
    }
    if !line.starts_with(VERSION_1) && !line.starts_with(VERSION_2) {
        return Err(LineProblem::UnknownVersion);
    }
    let suffix = MAC_OPEN
        .len()
        .saturating_add(HEX_LEN)
        .saturating_add(MAC_CLOSE.len());
    let mac_hex = line
        .len()
        .checked_sub(suffix)
        .and_then(|at| line.split_at_checked(at))
        .and_then(|(_, tail)| tail.strip_prefix(MAC_OPEN))
        .and_then(|t| t.strip_suffix(MAC_CLOSE));
    let Some(mac_hex) = mac_hex else {
        return Err(LineProblem::Malformed(
            "line does not end in ,\"mac\":\"<64 hex digits>\"}".into(),
        ));
    };
    let Some(mac) = unhex32(mac_hex) else {
        return Err(LineProblem::Malformed(
            "mac is not 64 lowercase hex digits".into(),
        ));
    };
    let body_len = line.len().saturating_sub(suffix);
    let body = line.get(..body_len).unwrap_or_default();
    if let Some(key) = key {
        if hmac::verify(key.hmac_key(), body, &mac).is_err() {
            return Err(LineProblem::BadMac);
        }
    }
    let (wire, event) = parse_forward_compatible(
        line,
        |w: Wire<AuditEvent>| {
            let (rest, event) = w.split();
            (rest, RecordedEvent::Known(event))
        },
        |w: Wire<Box<RawValue>>| {
            let (rest, raw) = w.split();
            UnknownEvent::from_raw(raw).map(|event| (rest, RecordedEvent::Unknown(event)))
        },
    )
    .map_err(|e| LineProblem::Malformed(truncate_reason(&e.to_string())))?;
    let version = match (wire.v, &wire.log) {
        (1, None) => 1,
        (2, Some(id)) if is_log_id(id) => 2,
        (1, Some(_)) => {
            return Err(LineProblem::Malformed(
                "a format 1 record has no log field".into(),
            ))
        }
        (2, _) => {
            return Err(LineProblem::Malformed(
                "a format 2 record needs a log field of 32 lowercase hex digits".into(),
            ))
        }
        _ => return Err(LineProblem::UnknownVersion),
    };
    if wire.seq == 0 {
        return Err(LineProblem::Malformed(
            "seq 0 (sequence numbers start at 1)".into(),
        ));
    }
    if !is_hash_hex(&wire.prev) {
        return Err(LineProblem::Malformed(
            "prev is not 64 lowercase hex digits".into(),
        ));
    }
    Ok(Authentic {
        version,
        log_id: wire.log,
        seq: wire.seq,
        prev: wire.prev,
        event,
        hash: line_hash(line),
    })
}

/// RFC 3339 UTC timestamp with nanoseconds, e.g. `2025-01-31T12:00:00.000000001Z`.
///
/// A clock set before 1970 (or past the calendar's range) yields the epoch.
pub(crate) fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = i64::try_from(d.as_secs())
        .ok()
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, d.subsec_nanos()))
        .unwrap_or(DateTime::UNIX_EPOCH);
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_dates() {
        let at = |s: u64, n: u32| rfc3339_utc(UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            at(1_709_251_199, 999_999_999),
            "2024-02-29T23:59:59.999999999Z"
        );
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000000Z");
        assert_eq!(at(1_735_689_599, 0), "2024-12-31T23:59:59.000000000Z");
        assert_eq!(at(253_402_300_799, 1), "9999-12-31T23:59:59.000000001Z");
        let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_utc(before_1970), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn timestamps_round_trip_through_an_rfc_3339_parser() {
        for (s, n) in [(0, 0), (951_782_400, 5), (1_709_251_199, 999_999_999)] {
            let t = UNIX_EPOCH + Duration::new(s, n);
            let text = rfc3339_utc(t);
            let back = DateTime::parse_from_rfc3339(&text).unwrap();
            assert_eq!(SystemTime::from(back), t, "{text}");
        }
    }

    #[test]
    fn encode_then_authenticate() {
        let key = AuditKey::from_bytes([7; 32]);
        let ev = AuditEvent::LogOpened {
            reason: "new".into(),
        };
        let line = encode_line(&key, None, 1, "t", "w", &ev, GENESIS_PREV).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.starts_with(r#"{"v":1,"seq":1,"ts":"t","worker":"w","event":{"type":"log_opened","reason":"new"},"prev":"000"#), "{text}");
        let a = authenticate(&key, body).unwrap();
        assert_eq!(
            (a.seq, a.prev.as_str(), a.event),
            (1, GENESIS_PREV, RecordedEvent::Known(ev))
        );
        assert_eq!(a.hash, line_hash(body));
        let other = AuditKey::from_bytes([8; 32]);
        assert!(matches!(
            authenticate(&other, body),
            Err(LineProblem::BadMac)
        ));
    }

    #[test]
    fn format_2_binds_the_log_id_into_the_mac_input() {
        let key = AuditKey::from_bytes([7; 32]);
        let ev = AuditEvent::LogOpened {
            reason: "continued".into(),
        };
        let id = "0123456789abcdef0123456789abcdef";
        let line = encode_line(&key, Some(id), 3, "t", "w", &ev, GENESIS_PREV).unwrap();
        let body = &line[..line.len() - 1];
        let text = std::str::from_utf8(body).unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"v":2,"log":"{id}","seq":3,"ts":"t""#)),
            "{text}"
        );
        let a = authenticate(&key, body).unwrap();
        assert_eq!((a.version, a.log_id.as_deref()), (2, Some(id)));
        // Another log id (same key, same everything else) is another MAC input.
        let other = text.replace(id, "ffffffffffffffffffffffffffffffff");
        assert!(matches!(
            authenticate(&key, other.as_bytes()),
            Err(LineProblem::BadMac)
        ));
        assert!(encode_line(&key, Some("ABC"), 1, "t", "w", &ev, GENESIS_PREV).is_err());
        assert!(begins_like_record(body, false));
        assert!(!begins_like_record(body, true));
        let v1 = encode_line(&key, None, 1, "t", "w", &ev, GENESIS_PREV).unwrap();
        assert!(begins_like_record(&v1, true));
        assert_eq!(authenticate(&key, &v1[..v1.len() - 1]).unwrap().version, 1);
        assert!(!begins_like_record(b"{\"v\":2,\"log\":\"xyz", false));
    }

    #[test]
    fn structural_problems_are_malformed_or_unknown_version() {
        let key = AuditKey::from_bytes([7; 32]);
        for bad in [&b""[..], b"garbage", b"{\"v\":1,\"seq\":1}", b"{\"v\":1,"] {
            assert!(matches!(
                authenticate(&key, bad),
                Err(LineProblem::Malformed(_))
            ));
        }
        assert!(matches!(
            authenticate(&key, b"{\"v\":3,\"seq\":1}"),
            Err(LineProblem::UnknownVersion)
        ));
    }

    /// A line whose MAC is right for `body`: what only a key holder writes.
    fn signed(key: &AuditKey, body: &str) -> Vec<u8> {
        let tag = hmac::sign(key.hmac_key(), body.as_bytes());
        let mut line = body.as_bytes().to_vec();
        line.extend_from_slice(MAC_OPEN);
        line.extend_from_slice(hex(tag.as_ref()).as_bytes());
        line.extend_from_slice(MAC_CLOSE);
        line
    }

    fn malformed(key: &AuditKey, body: &str) -> String {
        match authenticate(key, &signed(key, body)) {
            Err(LineProblem::Malformed(reason)) => reason,
            other => panic!("{body}: expected malformed, got {:?}", other.map(|a| a.seq)),
        }
    }

    /// The version and the log field must agree even under a valid MAC: a
    /// format 1 record with a log field, a format 2 record without one or
    /// with one that is not a log id, are refused with their own reason.
    #[test]
    fn version_and_log_field_must_agree() {
        let key = AuditKey::from_bytes([7; 32]);
        let event = r#""event":{"type":"log_opened","reason":"new"},"prev":""#;
        let tail = format!(r#"{event}{GENESIS_PREV}""#);
        let id = "0123456789abcdef0123456789abcdef";
        let ok2 = format!(r#"{{"v":2,"log":"{id}","seq":1,"ts":"t","worker":"w",{tail}"#);
        assert_eq!(authenticate(&key, &signed(&key, &ok2)).unwrap().version, 2);

        let v1_with_log = format!(r#"{{"v":1,"log":"{id}","seq":1,"ts":"t","worker":"w",{tail}"#);
        assert_eq!(
            malformed(&key, &v1_with_log),
            "a format 1 record has no log field"
        );
        let needs = "a format 2 record needs a log field of 32 lowercase hex digits";
        let v2_without = format!(r#"{{"v":2,"seq":1,"ts":"t","worker":"w",{tail}"#);
        assert_eq!(malformed(&key, &v2_without), needs);
        let upper = id.to_uppercase();
        let v2_bad_id = format!(r#"{{"v":2,"log":"{upper}","seq":1,"ts":"t","worker":"w",{tail}"#);
        assert_eq!(malformed(&key, &v2_bad_id), needs);
        let v2_short = format!(r#"{{"v":2,"log":"abc","seq":1,"ts":"t","worker":"w",{tail}"#);
        assert_eq!(malformed(&key, &v2_short), needs);
    }

    /// A record that authenticates but does not parse says why (serde's
    /// message), cut to 120 characters plus an ellipsis when longer.
    #[test]
    fn a_field_error_is_reported_and_bounded() {
        let key = AuditKey::from_bytes([7; 32]);
        let missing = format!(r#"{{"v":1,"seq":1,"ts":"t","worker":"w","prev":"{GENESIS_PREV}""#);
        let reason = malformed(&key, &missing);
        assert!(reason.contains("missing field `event`"), "{reason}");
        assert!(!reason.ends_with('…'), "{reason}");

        let long_value = "x".repeat(300);
        let ill_typed = format!(
            r#"{{"v":1,"seq":1,"ts":"t","worker":"w","event":{{"type":"vram_allocated","shard_id":"s","gpu_device":0,"bytes":"{long_value}"}},"prev":"{GENESIS_PREV}""#
        );
        let reason = malformed(&key, &ill_typed);
        assert_eq!(reason.chars().count(), 121, "{reason}");
        assert!(reason.ends_with('…'), "{reason}");
        assert!(reason.starts_with("invalid type: string \"xxx"), "{reason}");

        assert_eq!(truncate_reason(&"y".repeat(120)), "y".repeat(120));
        assert_eq!(truncate_reason("short"), "short");
    }

    /// A format 2 record body (without the MAC suffix) carrying `event`.
    fn body_with(event: &str) -> String {
        let id = "0123456789abcdef0123456789abcdef";
        format!(
            r#"{{"v":2,"log":"{id}","seq":7,"ts":"t","worker":"w","event":{event},"prev":"{GENESIS_PREV}""#
        )
    }

    /// Forward compatibility: an authentic record whose event type this
    /// build does not know is an authentic record, its event kept as written.
    #[test]
    fn an_unknown_event_type_authenticates_and_is_kept_as_written() {
        let key = AuditKey::from_bytes([7; 32]);
        let event = r#"{"type":"from_the_future","x":1,"nested":{"type":"vram_allocated"}}"#;
        let line = signed(&key, &body_with(event));
        let a = authenticate(&key, &line).unwrap();
        assert_eq!((a.version, a.seq), (2, 7));
        assert_eq!(a.hash, line_hash(&line));
        let RecordedEvent::Unknown(unknown) = &a.event else {
            panic!("{:?}", a.event)
        };
        assert_eq!((unknown.kind(), unknown.json()), ("from_the_future", event));
        assert_eq!(a.event.kind(), "from_the_future");
        assert!(a.event.known().is_none());
        // Under another key, or with any bit of the MAC flipped: refused, as
        // any other record.
        let other = AuditKey::from_bytes([8; 32]);
        assert!(matches!(
            authenticate(&other, &line),
            Err(LineProblem::BadMac)
        ));
        let at = line.len() - MAC_CLOSE.len() - HEX_LEN;
        for bit in [0, 7, 255] {
            let mut mac = unhex32(&line[at..at + HEX_LEN]).unwrap();
            mac[bit / 8] ^= 1 << (bit % 8);
            let mut flipped = line[..at].to_vec();
            flipped.extend_from_slice(hex(&mac).as_bytes());
            flipped.extend_from_slice(MAC_CLOSE);
            assert_eq!(flipped.len(), line.len());
            assert_ne!(flipped, line);
            assert!(
                matches!(authenticate(&key, &flipped), Err(LineProblem::BadMac)),
                "bit {bit}"
            );
        }
    }

    /// Only the type may be unknown: a known type with a missing or
    /// ill-typed field, an event that is not an object with one string
    /// `"type"`, or an unknown field outside the event stays malformed, with
    /// the reason the first reading gave.
    #[test]
    fn only_an_unknown_type_is_tolerated() {
        let key = AuditKey::from_bytes([7; 32]);
        let missing = malformed(
            &key,
            &body_with(r#"{"type":"leases_granted","shard_id":"s","gpu_device":0}"#),
        );
        assert!(missing.starts_with("missing field `count`"), "{missing}");
        let ill_typed = malformed(
            &key,
            &body_with(r#"{"type":"vram_allocated","shard_id":"s","gpu_device":0,"bytes":"1"}"#),
        );
        assert!(ill_typed.starts_with("invalid type: string"), "{ill_typed}");
        for event in [
            r#"["from_the_future"]"#,
            r#""from_the_future""#,
            r#"{"x":1}"#,
            r#"{"type":7}"#,
            r#"{"type":"from_the_future","type":"other"}"#,
            r#"{"type":"log_opened","reason":"new","reason":"new"}"#,
        ] {
            malformed(&key, &body_with(event));
        }
        let with_field = format!(
            r#"{{"v":1,"seq":1,"ts":"t","worker":"w","extra":1,"event":{{"type":"from_the_future"}},"prev":"{GENESIS_PREV}""#
        );
        let reason = malformed(&key, &with_field);
        assert!(reason.starts_with("unknown field `extra`"), "{reason}");
        // Also after the event: the reason is the field, not the event's type.
        let field_after = format!(
            r#"{{"v":1,"seq":1,"ts":"t","worker":"w","event":{{"type":"from_the_future"}},"extra":1,"prev":"{GENESIS_PREV}""#
        );
        let reason = malformed(&key, &field_after);
        assert!(reason.starts_with("unknown field `extra`"), "{reason}");
        let no_prev = r#"{"v":1,"seq":1,"ts":"t","worker":"w","event":{"type":"from_the_future"}"#;
        let reason = malformed(&key, no_prev);
        assert!(reason.starts_with("missing field `prev`"), "{reason}");
        let future_seq_0 = format!(
            r#"{{"v":1,"seq":0,"ts":"t","worker":"w","event":{{"type":"from_the_future"}},"prev":"{GENESIS_PREV}""#
        );
        assert_eq!(
            malformed(&key, &future_seq_0),
            "seq 0 (sequence numbers start at 1)"
        );
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..32).map(|i| i * 7).collect();
        let h = hex(&bytes);
        assert_eq!(unhex32(h.as_bytes()).unwrap().to_vec(), bytes);
        assert!(unhex32(h.to_uppercase().as_bytes()).is_none() || h == h.to_uppercase());
        assert!(unhex32(b"zz").is_none());
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod known_answer {
    use super::*;

    /// The example record of docs/audit-log.md.
    #[test]
    fn documented_example_record() {
        let key = AuditKey::from_bytes(std::array::from_fn(|i| i as u8));
        let ev = AuditEvent::VramAllocated {
            shard_id: "shard-0".into(),
            gpu_device: 0,
            bytes: 1024,
        };
        let line = encode_line(
            &key,
            None,
            1,
            "2025-01-01T00:00:00.000000000Z",
            "worker-0",
            &ev,
            GENESIS_PREV,
        )
        .unwrap();
        let text = String::from_utf8(line).unwrap();
        let body = text.trim_end_matches('\n');
        assert_eq!(body, EXPECTED_LINE);
        assert_eq!(line_hash(body.as_bytes()), EXPECTED_HASH);
        assert_eq!(key.key_id(), "f5e66cd1dbf3907e");
    }

    /// The format 2 example of docs/audit-log.md: a genesis record.
    #[test]
    fn documented_example_record_v2() {
        let key = AuditKey::from_bytes(std::array::from_fn(|i| i as u8));
        let log_id = "00112233445566778899aabbccddeeff";
        let ev = AuditEvent::LogCreated {
            format: 2,
            key_id: key.key_id(),
            log_id: log_id.into(),
            signing_key: None,
        };
        let line = encode_line(
            &key,
            Some(log_id),
            1,
            "2025-01-01T00:00:00.000000000Z",
            "worker-0",
            &ev,
            GENESIS_PREV,
        )
        .unwrap();
        let text = String::from_utf8(line).unwrap();
        let body = text.trim_end_matches('\n');
        assert_eq!(body, EXPECTED_LINE_V2);
        assert_eq!(line_hash(body.as_bytes()), EXPECTED_HASH_V2);
    }

    // Checked independently with Python's hmac and hashlib.
    const EXPECTED_LINE_V2: &str = r#"{"v":2,"log":"00112233445566778899aabbccddeeff","seq":1,"ts":"2025-01-01T00:00:00.000000000Z","worker":"worker-0","event":{"type":"log_created","format":2,"key_id":"f5e66cd1dbf3907e","log_id":"00112233445566778899aabbccddeeff"},"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"f3c07646f5de2321d0b5656cb368fa62e6675599032bdb6287a826284f914720"}"#;
    const EXPECTED_HASH_V2: &str =
        "617014cacbc36cf87d989a2247e7f858e7e6aee4bbc2682706e7dbc4b202d4f9";
    // Checked independently with Python's hmac and hashlib.
    const EXPECTED_LINE: &str = r#"{"v":1,"seq":1,"ts":"2025-01-01T00:00:00.000000000Z","worker":"worker-0","event":{"type":"vram_allocated","shard_id":"shard-0","gpu_device":0,"bytes":1024},"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"998c402657a609c7169814f5db3d031aefef896839d1be5d142cb8167bd0a7f2"}"#;
    const EXPECTED_HASH: &str = "d989c863d67b4b8e4a0405a506a42c43a5ca36912c0ac031665fc5fff20a0ae8";
}
