//! Metric keys made once per label set and kept, so that the per-call
//! metrics hand the recorder prepared keys. The `metrics` macros build a key
//! from its labels at every call (a vector allocated, every label hashed,
//! then freed), even when no recorder is installed: on the in-memory hot
//! path that cost more than the store's whole commit.
//!
//! Metrics emitted together form a [`Family`] (a command's outcome counter
//! and its duration and attempts histograms), found with one lookup by the
//! label values they share. Only `&'static str` values come through here,
//! so the kept keys are bounded by what the code declares (machine names,
//! command kinds, outcomes, reasons), never by ids or payloads.

use super::names::{
    COMMAND_ATTEMPTS, COMMAND_DURATION, COMMANDS, CONFLICT_GAP, CONFLICTS, DECISION_ATTEMPTS, DECISION_DURATION,
    DECISIONS, GIVE_UPS, GROUP_COMMIT_SIZE, RECOVERIES, TIMERS,
};
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::rc::Rc;

/// Label values a family's keys are made of, in its label order.
const MAX_LABELS: usize = 3;

/// Metrics emitted together: each metric's name and label names; a metric
/// takes the first values of the family's values, as many as it has labels.
pub(super) struct Family(&'static [(&'static str, &'static [&'static str])]);

/// Values: machine, command, outcome.
pub(super) static COMMAND: Family = Family(&[
    (COMMANDS, &["machine", "command", "outcome"]),
    (COMMAND_DURATION, &["machine", "command", "outcome"]),
    (COMMAND_ATTEMPTS, &["machine", "command"]),
]);
/// Values: machine, outcome.
pub(super) static DECISION: Family = Family(&[
    (DECISIONS, &["machine", "outcome"]),
    (DECISION_DURATION, &["machine", "outcome"]),
    (DECISION_ATTEMPTS, &["machine"]),
]);
/// Values: machine, outcome.
pub(super) static RECOVERY: Family = Family(&[(RECOVERIES, &["machine", "outcome"])]);
/// Values: machine, outcome.
pub(super) static TIMER: Family = Family(&[(TIMERS, &["machine", "outcome"])]);
/// Values: machine.
pub(super) static GROUP: Family = Family(&[(GROUP_COMMIT_SIZE, &["machine"])]);
/// Values: machine.
pub(super) static CONFLICT: Family = Family(&[(CONFLICTS, &["machine"]), (CONFLICT_GAP, &["machine"])]);
/// Values: machine, reason.
pub(super) static GIVE_UP: Family = Family(&[(GIVE_UPS, &["machine", "reason"])]);

/// What the `metrics` macros attach to the metrics `emit` still makes with
/// them: its module as target and path, `INFO`.
static METADATA: Metadata<'static> = Metadata::new(super::emit::MODULE, Level::INFO, Some(super::emit::MODULE));

/// A family's identity and its values' addresses and lengths. Equal
/// strings at different addresses only make two equal sets of keys.
#[derive(PartialEq, Eq)]
struct Signature([usize; 1 + 2 * MAX_LABELS]);

impl Hash for Signature {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for &word in &self.0 {
            state.write_usize(word);
        }
    }
}

thread_local! {
    // Per thread, so a lookup takes no lock; a handful of entries each.
    static KEPT: RefCell<HashMap<Signature, Rc<[Key]>, BuildHasherDefault<Mix>>> = RefCell::default();
}

/// The current recorder with a family's keys, in the family's order.
pub(super) struct Emit<'r> {
    recorder: &'r dyn Recorder,
    keys: &'r [Key],
}

impl Emit<'_> {
    /// The family's `index`th metric as a counter.
    pub(super) fn counter(&self, index: usize) -> Counter {
        debug_assert!(index < self.keys.len(), "no metric {index} in this family");
        self.keys.get(index).map_or_else(Counter::noop, |key| self.recorder.register_counter(key, &METADATA))
    }

    /// The family's `index`th metric as a histogram.
    pub(super) fn histogram(&self, index: usize) -> Histogram {
        debug_assert!(index < self.keys.len(), "no metric {index} in this family");
        self.keys.get(index).map_or_else(Histogram::noop, |key| self.recorder.register_histogram(key, &METADATA))
    }
}

/// Runs `emit` with the current recorder and `family`'s keys for `values`.
pub(super) fn emit<const N: usize>(family: &'static Family, values: [&'static str; N], emit: impl FnOnce(&Emit<'_>)) {
    const { assert!(N <= MAX_LABELS, "raise MAX_LABELS") };
    let keys = kept(family, values);
    metrics::with_recorder(|recorder| emit(&Emit { recorder, keys: &keys }));
}

fn kept<const N: usize>(family: &'static Family, values: [&'static str; N]) -> Rc<[Key]> {
    let mut words = [0; 1 + 2 * MAX_LABELS];
    words[0] = std::ptr::from_ref(family).addr();
    for (slot, value) in words[1..].chunks_exact_mut(2).zip(values) {
        slot.copy_from_slice(&[value.as_ptr().addr(), value.len()]);
    }
    let make = || -> Rc<[Key]> {
        family
            .0
            .iter()
            .map(|&(name, labels)| {
                let labels: Vec<Label> =
                    labels.iter().zip(values).map(|(&key, value)| Label::from_static_parts(key, value)).collect();
                Key::from_parts(name, labels)
            })
            .collect()
    };
    // The borrow ends in here, before any recorder code runs. A thread
    // whose locals are being torn down (a metric from a destructor) gets
    // keys made afresh.
    KEPT.try_with(|kept| Rc::clone(kept.borrow_mut().entry(Signature(words)).or_insert_with(make)))
        .unwrap_or_else(|_| make())
}

/// A multiply-and-rotate hash over the signature's words: they are
/// addresses of the crate's own constants, nothing a caller picks, so no
/// keyed hash is needed.
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Signature` is hashed with this, word by word; kept total.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}
