//! Properties: any sequence of events verifies; any single altered byte is
//! found on the line that holds it.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

mod common;

use common::*;
use proptest::prelude::*;
use vram_audit::{verify_lines, AuditEvent, AuditLog, AuditSink, ByteRange};

fn arb_event() -> impl Strategy<Value = AuditEvent> {
    let text = "[ -~é\"\\\\\n\t]{0,40}";
    prop_oneof![
        (text, any::<u32>(), any::<u64>()).prop_map(|(s, d, b)| AuditEvent::VramAllocated {
            shard_id: s,
            gpu_device: d,
            bytes: b
        }),
        (
            text,
            text,
            proptest::collection::vec((any::<u64>(), any::<u64>()), 0..4)
        )
            .prop_map(|(s, r, ranges)| AuditEvent::SealVerificationFailed {
                shard_id: s,
                gpu_device: 1,
                policy: "sampled".into(),
                reason: r,
                corrupt_ranges: ranges
                    .into_iter()
                    .map(|(start, end)| ByteRange { start, end })
                    .collect(),
            }),
        (any::<u32>(), any::<u64>(), any::<u64>(), text).prop_map(|(d, r, a, why)| {
            AuditEvent::VramAllocationFailed {
                gpu_device: d,
                requested: r,
                available: a,
                reason: why,
            }
        }),
        (0u64..1000).prop_map(event),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_events_verify(events in proptest::collection::vec(arb_event(), 0..20)) {
        let log = AuditLog::in_memory(key(), "w").unwrap();
        for e in &events {
            log.record(e.clone()).unwrap();
        }
        let lines = log.lines();
        prop_assert_eq!(lines.len(), events.len() + 1);
        let report = verify_lines(&lines, &key(), log.head().as_ref());
        prop_assert!(report.is_intact(), "{:?}", report.findings);
        prop_assert_eq!(report.records, events.len() as u64 + 1);
    }

    #[test]
    fn any_altered_byte_is_found_on_its_line(
        events in proptest::collection::vec(arb_event(), 1..10),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let log = AuditLog::in_memory(key(), "w").unwrap();
        for e in &events {
            log.record(e.clone()).unwrap();
        }
        let mut lines = log.lines();
        let n = which.index(lines.len());
        let mut bytes = lines[n].clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        // Keep the line one line: a flipped byte that makes a newline would
        // split it in two, which is a different tampering.
        prop_assume!(bytes[i] != b'\n');
        lines[n] = String::from_utf8_lossy(&bytes).into_owned();
        let report = verify_lines(&lines, &key(), None);
        prop_assert!(!report.is_intact());
        prop_assert_eq!(report.findings[0].line, n as u64 + 1, "{:?}", report.findings);
    }
}
