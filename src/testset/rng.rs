//! A tiny deterministic PRNG (SplitMix64) and a position hash, so generated cases are identical
//! on every machine and run without pulling in a random-number crate.

/// SplitMix64: small, fast, and good enough for picking shapes and colours.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub(super) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(super) fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
}

/// The SplitMix64 finaliser: a strong 64-bit mixing function.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic noise in `[-1, 1)` for a pixel position and channel; order-independent, so
/// rows may be rendered in parallel.
pub(super) fn hash_noise(seed: u64, x: u32, y: u32, c: u32) -> f32 {
    let h =
        mix(seed ^ ((x as u64) << 32 | y as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ c as u64);
    (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// Approximately Gaussian noise (sum of uniforms), unit variance.
pub(super) fn hash_gauss(seed: u64, x: u32, y: u32, c: u32) -> f32 {
    let s: f32 = (0..3).map(|k| hash_noise(seed, x, y, c * 8 + k)).sum();
    s // variance of each term is 1/3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let u = Rng::new(6).unit();
        assert!((0.0..1.0).contains(&u));
    }
}
