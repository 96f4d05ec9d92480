//! A small seedable random source for jitter: deterministic in tests, shared
//! without locks in production. Statistical quality beyond "spreads retries"
//! is not needed, so it is not worth a dependency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A thread-safe `SplitMix64` generator.
///
/// ```
/// use machine_core::retry::Rng;
///
/// let a = Rng::seeded(7);
/// let b = Rng::seeded(7);
/// assert_eq!(a.next_u64(), b.next_u64()); // same seed, same sequence
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug)]
pub struct Rng {
    state: AtomicU64,
}

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    #[must_use]
    pub const fn seeded(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed) }
    }

    /// A generator seeded from the clock and the address of a local, so
    /// processes started together still diverge.
    #[must_use]
    pub fn from_entropy() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let local = 0_u8;
        let address = std::ptr::addr_of!(local) as usize as u64;
        Self::seeded(u64::from(nanos) ^ address.rotate_left(32) ^ u64::from(std::process::id()))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        // Each caller claims its own step of the sequence, so concurrent
        // callers never observe the same value.
        let mut z = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniformly in `0..bound` (0 when `bound` is 0).
    pub fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift maps 64 random bits onto the range without the bias
        // a modulo has for large bounds.
        let wide = u128::from(self.next_u64()) * u128::from(bound);
        u64::try_from(wide >> 64).unwrap_or(bound - 1)
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::from_entropy()
    }
}
