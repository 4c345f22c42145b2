//! Synthetic model bytes for `demo` and `bench`, generated as they are read.

/// Writes `len` bytes of deterministic pseudo-random data (xorshift64*),
/// without holding them all in memory.
pub(crate) struct SyntheticModel {
    state: u64,
    left: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl SyntheticModel {
    pub(crate) fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed | 1,
            left: len,
            pending: [0; 8],
            pending_len: 0,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
    }
}

impl std::io::Read for SyntheticModel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let out = buf.get_mut(..want).unwrap_or_default();
        let mut rest = out;
        // Bytes left over from the previous call's last word come first.
        while self.pending_len > 0 {
            let Some((first, tail)) = std::mem::take(&mut rest).split_first_mut() else {
                break;
            };
            let idx = 8usize.saturating_sub(self.pending_len);
            *first = self.pending.get(idx).copied().unwrap_or(0);
            self.pending_len = self.pending_len.saturating_sub(1);
            rest = tail;
        }
        let mut words = rest.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_word());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            self.pending = self.next_word();
            let n = tail.len();
            if let Some(src) = self.pending.get(..n) {
                tail.copy_from_slice(src);
            }
            self.pending_len = 8usize.saturating_sub(n);
        }
        self.left = self.left.saturating_sub(want as u64);
        Ok(want)
    }
}
