//! Which leaves a check reads: random samples and random sweep orders, both
//! from the system CSPRNG (`ring::rand::SystemRandom`), so a tamperer who can
//! write device memory cannot predict which leaves the next check reads.

use crate::VramError;
use ring::rand::{SecureRandom, SystemRandom};

/// 128 random bits from the system RNG (shard and set ids).
pub(crate) fn random_id() -> Result<[u8; 16], VramError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| rng_failed())?;
    Ok(bytes)
}

/// Random words drawn per call to the RNG at most: one syscall per 8 KiB,
/// not per leaf, for long draws (sweep orders); a short draw (a sampled
/// check's few leaves) asks for only the words it uses, since the kernel's
/// generator costs about 2 µs per KiB (a `sampled:1` lease once spent 15 µs
/// drawing 8 KiB for one word).
const WORDS_PER_FILL: usize = 1024;

fn rng_failed() -> VramError {
    VramError::InvalidConfig {
        reason: "the system random number generator failed".into(),
    }
}

/// Random 64-bit words from the system RNG, fetched in batches of at most
/// [`WORDS_PER_FILL`].
struct RandomWords {
    rng: SystemRandom,
    buf: Vec<u8>,
    pos: usize,
    /// Words a refill fetches: the words the caller said it needs, capped.
    fill_words: usize,
}

impl RandomWords {
    /// For a draw of about `words` words.
    fn new(words: u64) -> Self {
        let fill_words = usize::try_from(words)
            .unwrap_or(WORDS_PER_FILL)
            .clamp(1, WORDS_PER_FILL);
        Self {
            rng: SystemRandom::new(),
            buf: Vec::new(),
            pos: 0,
            fill_words,
        }
    }

    fn next(&mut self) -> Result<u64, VramError> {
        if self.pos >= self.buf.len() {
            self.buf.resize(self.fill_words.saturating_mul(8), 0);
            self.rng.fill(&mut self.buf).map_err(|_| rng_failed())?;
            self.pos = 0;
        }
        let end = self.pos.saturating_add(8);
        let mut word = [0u8; 8];
        word.copy_from_slice(self.buf.get(self.pos..end).ok_or_else(rng_failed)?);
        self.pos = end;
        Ok(u64::from_le_bytes(word))
    }

    /// Uniform in `0..bound` (`bound > 0`); the modulo bias is below
    /// `bound / 2^64`, under 2^-30 for any leaf count under 2^34.
    fn below(&mut self, bound: u64) -> Result<u64, VramError> {
        Ok(self.next()?.checked_rem(bound).unwrap_or(0))
    }
}

/// `k` leaf indices uniform in `0..count` (with replacement).
///
/// At most `count` indices are drawn whatever `k` asks for: a sample at
/// least as large as the shard is a full verification's job, and `k` is
/// caller input (`u32::MAX` must not reserve 32 GiB of indices).
pub(crate) fn random_leaf_indices(count: u64, k: u32) -> Result<Vec<u64>, VramError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let k = u64::from(k).min(count);
    let mut words = RandomWords::new(k);
    let mut out = Vec::with_capacity(usize::try_from(k).unwrap_or(0));
    for _ in 0..k {
        out.push(words.below(count)?);
    }
    Ok(out)
}

/// A uniformly random permutation of `0..count` (Fisher-Yates).
pub(crate) fn random_permutation(count: u64) -> Result<Vec<u64>, VramError> {
    let mut order: Vec<u64> = (0..count).collect();
    let mut words = RandomWords::new(count);
    for i in (1..order.len()).rev() {
        let j = words.below(u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1))?;
        let j = usize::try_from(j).unwrap_or(0);
        order.swap(i, j);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge sample count is capped at the leaf count before anything is
    /// allocated (before: `u32::MAX` indices, 32 GiB, reserved up front).
    #[test]
    fn sample_count_is_capped_at_the_leaf_count() {
        let got = random_leaf_indices(10, u32::MAX).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|&i| i < 10));
        assert_eq!(random_leaf_indices(1000, 16).unwrap().len(), 16);
        assert!(random_leaf_indices(0, 5).unwrap().is_empty());
    }

    #[test]
    fn a_draw_fetches_the_words_it_uses_up_to_a_batch() {
        let mut w = RandomWords::new(1);
        let a = w.next().unwrap();
        assert_eq!(w.buf.len(), 8, "one word for a draw of one");
        // Past what was asked for, it keeps drawing (fresh words).
        let b = w.next().unwrap();
        assert_ne!(a, b, "equal with probability 2^-64");
        assert_eq!(RandomWords::new(0).fill_words, 1);
        assert_eq!(RandomWords::new(16).fill_words, 16);
        assert_eq!(RandomWords::new(u64::MAX).fill_words, WORDS_PER_FILL);
        // Draws of every size stay in range.
        for k in [1u32, 2, 7, 2000] {
            let got = random_leaf_indices(5000, k).unwrap();
            assert_eq!(got.len(), k as usize);
            assert!(got.iter().all(|&i| i < 5000));
        }
    }

    #[test]
    fn permutations_cover_every_leaf_once_and_differ() {
        let a = random_permutation(1000).unwrap();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        let b = random_permutation(1000).unwrap();
        // Equal with probability 1/1000!: a fixed order would fail here.
        assert_ne!(a, b);
        assert_ne!(a, sorted);
        assert!(random_permutation(0).unwrap().is_empty());
        assert_eq!(random_permutation(1).unwrap(), vec![0]);
    }
}
