//! `AuditEvent` JSON: whatever parses serializes, parses back equal, and
//! serializes to the same text again, tagged with its `kind()`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vram_audit::AuditEvent;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(event) = serde_json::from_str::<AuditEvent>(&text) else {
        return;
    };
    let json = serde_json::to_string(&event).unwrap();
    let again: AuditEvent =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
    assert_eq!(again, event);
    assert_eq!(serde_json::to_string(&again).unwrap(), json);

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value.get("type").and_then(serde_json::Value::as_str),
        Some(event.kind())
    );
    let _ = event.severity();
    // The pretty form is the same event.
    let pretty = serde_json::to_string_pretty(&event).unwrap();
    assert_eq!(serde_json::from_str::<AuditEvent>(&pretty).unwrap(), event);
});
