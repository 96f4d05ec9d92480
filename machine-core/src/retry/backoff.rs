//! The backoff arithmetic on its own, separate from any decision: how long
//! to wait before retry *n*, from a curve, the version gap, a cap and jitter.
//! Everything is computed in whole nanoseconds with saturating arithmetic, so
//! microsecond bases never round to zero and extreme inputs never overflow.

use super::Rng;
use std::time::Duration;

/// How the wait before each retry is randomised, so writers that collided do
/// not collide again in lockstep (the AWS "Exponential Backoff and Jitter"
/// definitions; `d` is the capped, un-jittered wait of this retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// Wait exactly `d`.
    #[default]
    None,
    /// Wait uniformly in `[0, d]`.
    Full,
    /// Wait `d/2` plus uniformly in `[0, d/2]`.
    Equal,
    /// Wait uniformly in `[base, 3 × previous wait]`, capped at the maximum
    /// delay; the first retry uses `base` as its previous wait.
    Decorrelated,
}

/// The un-jittered curve of waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same wait before every retry.
    Fixed(Duration),
    /// `base × 2ⁿ⁻¹` before retry *n*.
    Exponential(Duration),
    /// A wait that grows with the version gap of the conflict (see [`Adaptive`]).
    Adaptive(Adaptive),
}

/// Bands of the adaptive backoff, by the conflict's version gap `g` (the
/// number of writes that overtook us, `current − attempted + 1`) before retry
/// *n*:
///
/// | band | when | wait |
/// |---|---|---|
/// | light | `g ≤ light` | `base × 2ⁿ⁻¹` |
/// | proportional | `light < g ≤ aggressive` | `base × 2ⁿ⁻¹ × g` |
/// | aggressive | `g > aggressive` | `base × 2ⁿ⁻¹ × g²` |
///
/// One writer overtaking us is ordinary: plain exponential backoff. Several
/// mean a crowd went through while we worked, so wait in proportion. Many
/// mean a storm, so back off by the square. The gap counts the writes that
/// landed during *our* read-to-commit window, so it grows with long windows
/// (slow transitions, slow stores, lagging reads) more than with the number
/// of writers: a record that is saturated with fast writers shows gaps of 1
/// or 2, and adaptive then behaves like exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    /// The unit wait.
    pub base: Duration,
    /// The largest gap still treated as light contention (default 1).
    pub light: u64,
    /// The largest gap still treated proportionally (default 10).
    pub aggressive: u64,
}

impl Adaptive {
    /// Bands with the default thresholds (light up to 1, proportional up to 10).
    #[must_use]
    pub const fn new(base: Duration) -> Self {
        Self { base, light: 1, aggressive: 10 }
    }
}

impl Backoff {
    /// The base wait (the lower bound of decorrelated jitter).
    #[must_use]
    pub fn base(&self) -> Duration {
        match self {
            Self::Fixed(base) | Self::Exponential(base) => *base,
            Self::Adaptive(adaptive) => adaptive.base,
        }
    }

    /// The un-jittered, uncapped wait before retry `retry` (1-based) after a
    /// conflict with version gap `gap`.
    #[must_use]
    pub fn curve(&self, retry: u32, gap: u64) -> Duration {
        let doubling = |wait: Duration| wait.saturating_mul(1_u32 << retry.saturating_sub(1).min(31));
        match *self {
            Self::Fixed(wait) => wait,
            Self::Exponential(base) => doubling(base),
            Self::Adaptive(Adaptive { base, light, aggressive }) => {
                let times = u32::try_from(gap).unwrap_or(u32::MAX);
                let wait = doubling(base);
                if gap <= light {
                    wait
                } else if gap <= aggressive {
                    wait.saturating_mul(times)
                } else {
                    wait.saturating_mul(times).saturating_mul(times)
                }
            }
        }
    }
}

/// The wait before retry `retry`: the backoff's curve, capped at `cap`, then
/// jittered, and never above `cap`. `previous` is the wait before the previous
/// retry (zero before the first), which only decorrelated jitter uses.
#[must_use]
pub fn delay(
    backoff: &Backoff,
    jitter: Jitter,
    cap: Duration,
    rng: &Rng,
    retry: u32,
    gap: u64,
    previous: Duration,
) -> Duration {
    let cap = nanos(cap);
    let curve = nanos(backoff.curve(retry, gap)).min(cap);
    let waited = match jitter {
        Jitter::None => curve,
        Jitter::Full => rng.below(curve.saturating_add(1)),
        Jitter::Equal => {
            let half = curve / 2;
            half + rng.below(curve - half + 1)
        }
        Jitter::Decorrelated => {
            let low = nanos(backoff.base());
            let previous = if previous.is_zero() { low } else { nanos(previous) };
            let high = previous.saturating_mul(3).max(low);
            low + rng.below((high - low).saturating_add(1))
        }
    };
    Duration::from_nanos(waited.min(cap))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Rng;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn no_jitter(backoff: Backoff, cap: Duration, retry: u32, gap: u64) -> Duration {
        delay(&backoff, Jitter::None, cap, &Rng::seeded(0), retry, gap, Duration::ZERO)
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_without_overflow() {
        let waits: Vec<_> = (1..=6).map(|n| no_jitter(Backoff::Exponential(MS), 10 * MS, n, 1)).collect();
        assert_eq!(waits, [MS, 2 * MS, 4 * MS, 8 * MS, 10 * MS, 10 * MS]);
        assert_eq!(no_jitter(Backoff::Exponential(MS), 10 * MS, u32::MAX, 1), 10 * MS);
        let huge = Backoff::Exponential(Duration::MAX);
        assert_eq!(no_jitter(huge, Duration::MAX, 40, 1), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn adaptive_bands_follow_the_documented_formula() {
        let bands = Backoff::Adaptive(Adaptive::new(MS));
        let cap = Duration::from_mins(1);
        assert_eq!(no_jitter(bands, cap, 1, 1), MS, "light: one writer overtook us");
        assert_eq!(no_jitter(bands, cap, 3, 1), 4 * MS, "light is plain exponential");
        assert_eq!(no_jitter(bands, cap, 1, 4), 4 * MS, "proportional");
        assert_eq!(no_jitter(bands, cap, 3, 10), 40 * MS, "proportional up to the threshold");
        assert_eq!(no_jitter(bands, cap, 1, 11), 121 * MS, "aggressive: by the square of the gap");
        assert_eq!(no_jitter(bands, cap, 3, 11), 484 * MS, "aggressive doubles per retry too");
        assert_eq!(no_jitter(bands, 20 * MS, 3, 11), 20 * MS, "capped");
        assert_eq!(no_jitter(bands, cap, 1, u64::MAX), cap, "a huge gap saturates");
    }

    #[test]
    fn microsecond_bases_do_not_round_to_zero() {
        let rng = Rng::seeded(1);
        for retry in 1..10 {
            let wait = delay(&Backoff::Exponential(Duration::from_micros(3)), Jitter::Equal, MS, &rng, retry, 1, MS);
            assert!(wait >= Duration::from_nanos(1_500), "{wait:?}");
        }
        let base = Duration::from_micros(7);
        let wait = delay(&Backoff::Fixed(base), Jitter::Decorrelated, MS, &rng, 1, 1, Duration::ZERO);
        assert!(wait >= base, "{wait:?}");
    }

    #[test]
    fn full_jitter_reaches_near_zero() {
        let rng = Rng::seeded(9);
        let waits: Vec<_> =
            (0..200).map(|i| delay(&Backoff::Exponential(MS), Jitter::Full, 8 * MS, &rng, 1 + i % 6, 1, MS)).collect();
        assert!(waits.iter().any(|w| *w < MS / 2));
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        let base = (0_u64..=u64::MAX).prop_map(Duration::from_nanos);
        prop_oneof![
            base.clone().prop_map(Backoff::Fixed),
            base.clone().prop_map(Backoff::Exponential),
            (base, any::<u64>(), any::<u64>()).prop_map(|(base, light, aggressive)| Backoff::Adaptive(Adaptive {
                base,
                light,
                aggressive
            })),
        ]
    }

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)]
    }

    fn small_duration() -> impl Strategy<Value = Duration> {
        (0_u64..10_000_000_000).prop_map(Duration::from_nanos)
    }

    proptest! {
        #[test]
        fn never_above_the_cap(
            backoff in any_backoff(), jitter in any_jitter(), cap in any::<u64>(), seed in any::<u64>(),
            retry in any::<u32>(), gap in any::<u64>(), previous in any::<u64>(),
        ) {
            let cap = Duration::from_nanos(cap);
            let wait = delay(&backoff, jitter, cap, &Rng::seeded(seed), retry, gap, Duration::from_nanos(previous));
            prop_assert!(wait <= cap);
        }

        #[test]
        fn never_below_zero_nor_below_the_floor(
            base in small_duration(), cap in small_duration(), seed in any::<u64>(), retry in 1_u32..64,
        ) {
            // Full jitter's floor is zero: the wait is a valid, non-negative
            // duration; without jitter it is exactly the capped curve.
            let rng = Rng::seeded(seed);
            let full = delay(&Backoff::Exponential(base), Jitter::Full, cap, &rng, retry, 1, Duration::ZERO);
            prop_assert!(full >= Duration::ZERO && full <= cap);
            let plain = delay(&Backoff::Exponential(base), Jitter::None, cap, &rng, retry, 1, Duration::ZERO);
            prop_assert_eq!(plain, Backoff::Exponential(base).curve(retry, 1).min(cap));
        }

        #[test]
        fn equal_jitter_keeps_at_least_half(
            base in small_duration(), cap in small_duration(), seed in any::<u64>(), retry in 1_u32..64,
        ) {
            let curve = Backoff::Exponential(base).curve(retry, 1).min(cap);
            let wait = delay(&Backoff::Exponential(base), Jitter::Equal, cap, &Rng::seeded(seed), retry, 1, Duration::ZERO);
            prop_assert!(wait >= curve / 2, "{wait:?} < half of {curve:?}");
            prop_assert!(wait <= curve);
        }

        #[test]
        fn decorrelated_stays_between_base_and_three_times_the_previous_wait(
            base in small_duration(), cap in small_duration(), previous in small_duration(), seed in any::<u64>(),
        ) {
            let wait = delay(&Backoff::Exponential(base), Jitter::Decorrelated, cap, &Rng::seeded(seed), 2, 1, previous);
            let previous = if previous.is_zero() { base } else { previous };
            prop_assert!(wait >= base.min(cap), "{wait:?} below the base");
            prop_assert!(wait <= (previous * 3).max(base).min(cap), "{wait:?} above 3 × {previous:?}");
        }

        #[test]
        fn exponential_never_shrinks_and_adaptive_grows_with_the_gap(
            base in small_duration(), retry in 1_u32..40, gap in 1_u64..1_000,
        ) {
            let cap = Duration::from_hours(1);
            let exponential = Backoff::Exponential(base);
            prop_assert!(no_jitter(exponential, cap, retry + 1, 1) >= no_jitter(exponential, cap, retry, 1));
            let adaptive = Backoff::Adaptive(Adaptive::new(base));
            prop_assert!(no_jitter(adaptive, cap, retry, gap + 1) >= no_jitter(adaptive, cap, retry, gap));
        }
    }
}
