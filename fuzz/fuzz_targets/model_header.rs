//! `vram-format` on arbitrary bytes: the GGUF and safetensors header
//! readers give a verdict (never a panic, never an allocation the input did
//! not pay for); what they accept lies inside the file, and reading the
//! header in steps agrees with reading it at once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vram_format::{read_table, FormatError, GgufHeader, SafetensorsHeader};

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    // The first byte picks the format: GGUF (the magic prepended) or as is.
    let mut file = Vec::with_capacity(data.len() + 4);
    if data.first().is_some_and(|b| b % 2 == 0) {
        file.extend_from_slice(b"GGUF");
    }
    file.extend_from_slice(data.get(1..).unwrap_or_default());
    let file_len = file.len() as u64;
    let whole = GgufHeader::parse(&file, Some(file_len));
    if let Ok(h) = &whole {
        for t in h.table.tensors() {
            assert!(t.data.start <= t.data.end && t.data.end <= file_len);
            assert!(t.data.start >= h.data_start());
        }
    }
    let _ = GgufHeader::parse(&file, None);
    let _ = SafetensorsHeader::parse(&file, Some(file_len));
    let _ = SafetensorsHeader::parse(&file, Some(len));
    let stepped = read_table(file_len, |n| {
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(file.len());
        Ok::<_, FormatError>(file[..n].to_vec())
    });
    // One verdict whichever way the header is read.
    if let Ok(h) = whole {
        assert_eq!(stepped.ok(), Some(h.table));
    }
});
