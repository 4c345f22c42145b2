//! DSSE pre-authentication encoding, as model_signing signs it.

/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The DSSE v1 pre-authentication encoding of an in-toto payload:
/// `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths in
/// ASCII decimal (<https://github.com/secure-systems-lab/dsse>, protocol.md).
#[must_use]
pub fn pae(payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {} {} ",
        IN_TOTO_PAYLOAD_TYPE.len(),
        IN_TOTO_PAYLOAD_TYPE,
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len().saturating_add(payload.len()));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The encoding model_signing 0.2 signed, which model_signing 1.1.1 still
/// accepts when [`pae`] does not verify: `"DSSEV1"` (capital V), and the
/// payload as Python's `repr()` of a `bytes` object (`b'...'` with escapes),
/// the result of formatting bytes into a string.
#[must_use]
pub fn pae_compat(payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEV1 {} {} {} ",
        IN_TOTO_PAYLOAD_TYPE.len(),
        IN_TOTO_PAYLOAD_TYPE,
        payload.len()
    )
    .into_bytes();
    python_bytes_repr(payload, &mut out);
    out
}

/// Python's `repr(bytes)`: `b'...'`, or `b"..."` when the bytes hold a `'`
/// and no `"`; `\\`, the quote, `\t`, `\n`, `\r` escaped, other bytes outside
/// 0x20..0x7f as `\xhh`.
fn python_bytes_repr(bytes: &[u8], out: &mut Vec<u8>) {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push(b'b');
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ if b == quote => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_dsse_v1_encoding() {
        assert_eq!(
            pae(b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn compat_matches_python_repr() {
        // Values checked against CPython 3.11: repr(b"...").
        let cases: [(&[u8], &str); 6] = [
            (b"{\n  \"a\": 1\n}", r#"b'{\n  "a": 1\n}'"#),
            (b"it's", r#"b"it's""#),
            (b"'\"", r#"b'\'"'"#),
            (b"a\\b\tc\r", r"b'a\\b\tc\r'"),
            (b"\x00\x7f\xff", r"b'\x00\x7f\xff'"),
            (b"", "b''"),
        ];
        for (bytes, repr) in cases {
            let mut out = Vec::new();
            python_bytes_repr(bytes, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), repr);
        }
        let p = pae_compat(b"x");
        assert_eq!(p, b"DSSEV1 28 application/vnd.in-toto+json 1 b'x'".to_vec());
    }
}
