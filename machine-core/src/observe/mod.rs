//! What an operator sees of the pipeline without writing code: `tracing`
//! spans and events, and `metrics` counters, histograms and gauges, emitted
//! from the one pipeline (admit, attempts, finish) and the parts around it
//! (the circuit breaker, the retry queue), so every driver — `handle`,
//! coalesced groups, `handle_in`, decisions, `recover`, the retry queue —
//! reports the same things the same way.
//!
//! Everything here sits behind the `observe` cargo feature. Without it the
//! hooks below are empty inline functions and zero-sized values: the default
//! build links neither `tracing` nor `metrics` and pays nothing. With it, the
//! hooks cost a few atomic loads and one lookup of the call's metric keys,
//! kept per thread (`keys`), when no subscriber or recorder is installed,
//! and the recorder's own lookups when one is (figures in
//! `docs/performance.md`).
//!
//! The metric names are the constants of this module (with the feature on);
//! `docs/observability.md` lists every metric, span and event with its
//! labels, fields and level, and why the levels are what they are.
//!
//! The module is a leaf: it depends on `error` only (it reads errors and
//! conflicts), so `retry`, `runner` and `queue` can all call it without a
//! cycle.
//!
//! Labels are of bounded cardinality by construction: machine names, command
//! kinds and outcome names are `&'static str` the code declares, never ids or
//! payloads. Which records are hot is told by the `DEBUG` conflict event,
//! which names the record (unless the machine is
//! [`SENSITIVE`](crate::Machine::SENSITIVE)), next to the per-machine
//! conflict counter that says *that* a machine has hot records.

#[cfg(feature = "observe")]
mod emit;
#[cfg(feature = "observe")]
mod keys;
#[cfg(feature = "observe")]
mod names;
#[cfg(feature = "observe")]
mod outcome;

#[cfg(feature = "observe")]
pub use names::*;

use crate::error::{Error, VersionConflict};
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// What a watched call is: which span it opens and which metric family it
/// counts in.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "observe"), allow(dead_code))]
pub(crate) enum Op {
    /// `Runner::handle` (also when the retry queue re-drives a command), with
    /// the command's kind.
    Handle(&'static str),
    /// `Runner::handle_in`, inside the caller's transaction.
    HandleIn(&'static str),
    /// `Runner::recover`.
    Recover,
    /// A decision over `reads` records.
    Decide { reads: usize },
    /// One group commit of a coalesced record, of `size` commands.
    Group { size: usize },
    /// `Runner::migrate` rewriting one record at the current schema version.
    Migrate,
    /// `Runner::fire`: a due state's timer command.
    Fire,
    /// `Runner::remove`, or `Runner::remove_terminal` removing one record.
    Remove,
}

/// How a call that returned `Ok` ended, as its driver describes it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "observe"), allow(dead_code))]
pub(crate) struct Ended {
    pub(crate) outcome: &'static str,
    pub(crate) attempts: Option<u32>,
    pub(crate) version: Option<u64>,
    pub(crate) to: Option<&'static str>,
}

impl Ended {
    /// An `Ok` with `outcome` after `attempts` attempts.
    pub(crate) fn new(outcome: &'static str, attempts: u32) -> Self {
        Self { outcome, attempts: Some(attempts), version: None, to: None }
    }

    /// A committed command: its attempts, the version it wrote and the kind
    /// of the state it left.
    pub(crate) fn committed(attempts: u32, version: u64, to: &'static str) -> Self {
        Self { outcome: "committed", attempts: Some(attempts), version: Some(version), to: Some(to) }
    }
}

/// One watched call: its span (entered while it runs) and its start time;
/// [`finish`](Watch::finish) counts it. Zero-sized without the feature.
pub(crate) struct Watch {
    #[cfg(feature = "observe")]
    inner: emit::Watch,
}

#[cfg_attr(not(feature = "observe"), allow(unused_variables, clippy::unused_self))]
impl Watch {
    /// Starts watching a call on record `(machine, id)`.
    #[inline]
    pub(crate) fn start(op: Op, machine: &'static str, id: &str, sensitive: bool) -> Self {
        Self {
            #[cfg(feature = "observe")]
            inner: emit::Watch::start(op, machine, id, sensitive),
        }
    }

    /// `work`, run inside the call's span. Not an `async fn`: wrapping
    /// would store the future twice, and futures here are large.
    #[cfg(feature = "observe")]
    pub(crate) fn run<F: Future>(&self, work: F) -> impl Future<Output = F::Output> {
        self.inner.run(work)
    }

    /// `work` itself (there are no spans without the feature).
    #[cfg(not(feature = "observe"))]
    #[allow(clippy::unused_self)]
    pub(crate) fn run<F: Future>(&self, work: F) -> F {
        work
    }

    /// Counts the call: `ok` describes an `Ok`, errors describe themselves.
    #[inline]
    pub(crate) fn finish<T, E: Display>(self, id: &str, result: &Result<T, Error<E>>, ok: impl FnOnce(&T) -> Ended) {
        #[cfg(feature = "observe")]
        self.inner.finish(id, result, ok);
    }

    /// Counts a call that ended with `error` before it ran (refused at admission).
    #[inline]
    pub(crate) fn refused<E: Display>(self, id: &str, error: &Error<E>) {
        #[cfg(feature = "observe")]
        self.inner.finish_err(id, error);
    }
}

/// An attempt lost a race on a record of `machine`: counted, and told at
/// `DEBUG` with the gap and the wait before the next attempt (`None`: the
/// policy gives up, which [`gave_up`] reports).
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn conflict(
    machine: &'static str,
    conflict: &VersionConflict,
    attempt: u32,
    wait: Option<Duration>,
    sensitive: bool,
) {
    #[cfg(feature = "observe")]
    emit::conflict(machine, conflict, attempt, wait, sensitive);
}

/// The policy stopped a call's attempts (`reason`: why): counted and told
/// at `WARN`, once per loop (a coalesced group gives up once for all its
/// callers, who are each counted by their own [`Watch`]).
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn gave_up(
    machine: &'static str,
    conflict: &VersionConflict,
    attempts: u32,
    reason: &'static str,
    elapsed: Duration,
    sensitive: bool,
) {
    #[cfg(feature = "observe")]
    emit::gave_up(machine, conflict, attempts, reason, elapsed, sensitive);
}

/// A sweeper disarmed the timer of record `(machine, id)` because its timer
/// command was refused with `error`: told at `WARN`.
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn timer_refused<E: Display>(machine: &'static str, id: &str, error: &Error<E>, sensitive: bool) {
    #[cfg(feature = "observe")]
    emit::timer_refused(machine, id, error, sensitive);
}

/// Processor `name` finished `delivered` entries and parked `parked`.
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn processed(name: &str, delivered: u64, parked: u64) {
    #[cfg(feature = "observe")]
    emit::processed(name, delivered, parked);
}

/// Processor `name` is `lag` changes behind the head of the feed.
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn processor_lag(name: &str, lag: u64) {
    #[cfg(feature = "observe")]
    emit::processor_lag(name, lag);
}

/// Processor `name`'s instance `owner` took (`taken`) or lost (`lost`) its
/// lease: counted, and told at `INFO` (a takeover is worth a line).
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn processor_lease(name: &str, owner: &str, event: &'static str) {
    #[cfg(feature = "observe")]
    emit::processor_lease(name, owner, event);
}

/// A plan's first and last state kinds, recorded on the pipeline's current
/// span (a command's or a group's; never a span of the caller's own).
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn planned(from: &'static str, to: Option<&'static str>) {
    #[cfg(feature = "observe")]
    emit::planned(from, to);
}

/// What a circuit does with calls, for its gauge and transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "observe"), allow(dead_code))]
pub(crate) enum Phase {
    Closed,
    Open,
    HalfOpen,
}

/// A circuit moved from `from` to `to` on a call of `machine`.
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn circuit(machine: &str, from: Phase, to: Phase) {
    #[cfg(feature = "observe")]
    if from != to {
        emit::circuit(machine, from, to);
    }
}

/// `open` circuits that were not closed went away with their breaker.
#[inline]
#[cfg_attr(not(feature = "observe"), allow(unused_variables))]
pub(crate) fn circuits_dropped(open: usize) {
    #[cfg(feature = "observe")]
    emit::circuits_dropped(open);
}

/// The figures of one retry queue last reported to its gauges, so that
/// several queues of one machine add up instead of overwriting each other.
#[derive(Debug, Default)]
pub(crate) struct QueueGauges {
    #[cfg(feature = "observe")]
    reported: (usize, usize),
}

#[cfg_attr(not(feature = "observe"), allow(unused_variables, clippy::unused_self))]
impl QueueGauges {
    /// Reports that a queue of `machine` now holds `depth` commands (waiting
    /// or being tried) and `dead` dead letters.
    #[inline]
    pub(crate) fn sync(&mut self, machine: &'static str, depth: usize, dead: usize) {
        #[cfg(feature = "observe")]
        {
            emit::queue(machine, self.reported, (depth, dead));
            self.reported = (depth, dead);
        }
    }
}
