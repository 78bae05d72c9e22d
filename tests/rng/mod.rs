//! Tiny deterministic PRNG (xorshift64*) for tests, so a failing seed reproduces. The seed
//! must not be 0.

pub struct Rng(pub u64);

impl Rng {
    #[allow(dead_code)] // a module of several test crates: not each uses every method
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for test workloads.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
