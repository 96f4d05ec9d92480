//! The hooks' bodies, with the feature on: spans and events through
//! `tracing` (target `machine_core`, so `RUST_LOG=machine_core=debug` selects
//! them), metrics through the `metrics` facade.
//!
//! Levels: `ERROR` for bugs and bad data (a panicking transition, an
//! undeclared target, a record that does not decode), `WARN` for what needs
//! attention but is no bug (a give-up, a recorded failure, a store error, a
//! circuit opening), `INFO` for rare operator-level changes (a recovery, a
//! circuit closing), `DEBUG` for the per-call spans and the per-conflict
//! events that explain a retry storm. So `INFO` stays quiet in production
//! however busy the service is.

// Gauges and histograms take f64; counts here stay far below 2^52.
#![allow(clippy::cast_precision_loss)]

use super::names::{
    CIRCUIT_TRANSITIONS, CIRCUITS_OPEN, DEAD_LETTERS, DEAD_LETTERS_TOTAL, PROCESSED, PROCESSOR_LAG, PROCESSOR_LEASES,
    QUEUE_DEPTH,
};
use super::{Ended, Op, Phase, keys, outcome};
use crate::error::{Error, VersionConflict};
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::field::Empty;
use tracing::{Instrument, Span};

/// The target of every span and event.
const TARGET: &str = "machine_core";

/// This module's path: the `metrics` macros' target for what it emits, kept
/// by the metrics made with prepared keys too (`keys`).
pub(super) const MODULE: &str = module_path!();

pub(super) struct Watch {
    started: Instant,
    span: Span,
    op: Op,
    machine: &'static str,
    sensitive: bool,
}

impl Watch {
    pub(super) fn start(op: Op, machine: &'static str, id: &str, sensitive: bool) -> Self {
        let span = match op {
            Op::Handle(command) => tracing::debug_span!(target: TARGET, "handle",
                machine, id = Empty, command, from = Empty, to = Empty, version = Empty,
                attempts = Empty, outcome = Empty, gap = Empty),
            Op::HandleIn(command) => tracing::debug_span!(target: TARGET, "handle_in",
                machine, id = Empty, command, from = Empty, to = Empty, version = Empty,
                attempts = Empty, outcome = Empty, gap = Empty),
            Op::Recover => tracing::debug_span!(target: TARGET, "recover",
                machine, id = Empty, from = Empty, to = Empty, version = Empty,
                attempts = Empty, outcome = Empty, gap = Empty),
            Op::Fire => tracing::debug_span!(target: TARGET, "fire",
                machine, id = Empty, from = Empty, to = Empty, version = Empty,
                attempts = Empty, outcome = Empty, gap = Empty),
            Op::Migrate => tracing::debug_span!(target: TARGET, "migrate",
                machine, id = Empty, from = Empty, to = Empty, version = Empty,
                attempts = Empty, outcome = Empty, gap = Empty),
            Op::Remove => tracing::debug_span!(target: TARGET, "remove",
                machine, id = Empty, version = Empty, attempts = Empty, outcome = Empty, gap = Empty),
            Op::Decide { reads } => tracing::debug_span!(target: TARGET, "decision",
                machine, id = Empty, reads, attempts = Empty, outcome = Empty, gap = Empty),
            Op::Group { size } => {
                keys::emit(&keys::GROUP, [machine], |emit| emit.histogram(0).record(size as f64));
                tracing::debug_span!(target: TARGET, "group_commit",
                    machine, id = Empty, size, from = Empty, to = Empty,
                    attempts = Empty, outcome = Empty, gap = Empty)
            }
        };
        if !sensitive {
            span.record("id", id);
        }
        Self { started: Instant::now(), span, op, machine, sensitive }
    }

    pub(super) fn run<F: Future>(&self, work: F) -> tracing::instrument::Instrumented<F> {
        work.instrument(self.span.clone())
    }

    pub(super) fn finish<T, E: Display>(self, id: &str, result: &Result<T, Error<E>>, ok: impl FnOnce(&T) -> Ended) {
        match result {
            Ok(value) => self.end(id, ok(value), None::<&Error<E>>),
            Err(error) => self.finish_err(id, error),
        }
    }

    pub(super) fn finish_err<E: Display>(self, id: &str, error: &Error<E>) {
        self.end(id, outcome::of_error(error), Some(error));
    }

    fn end<E: Display>(self, id: &str, ended: Ended, error: Option<&Error<E>>) {
        let seconds = self.started.elapsed().as_secs_f64();
        let span = &self.span;
        span.record("outcome", ended.outcome);
        if let Some(attempts) = ended.attempts {
            span.record("attempts", attempts);
        }
        if let Some(version) = ended.version {
            span.record("version", version);
        }
        if let Some(to) = ended.to {
            span.record("to", to);
        }
        let (machine, outcome) = (self.machine, ended.outcome);
        match self.op {
            Op::Handle(command) | Op::HandleIn(command) => {
                keys::emit(&keys::COMMAND, [machine, command, outcome], |emit| {
                    emit.counter(0).increment(1);
                    emit.histogram(1).record(seconds);
                    if let Some(attempts) = ended.attempts {
                        emit.histogram(2).record(f64::from(attempts));
                    }
                });
            }
            Op::Recover => {
                keys::emit(&keys::RECOVERY, [machine, outcome], |emit| emit.counter(0).increment(1));
                if outcome == "committed" {
                    span.in_scope(|| self.recovered(id, ended.version));
                }
            }
            Op::Fire => {
                keys::emit(&keys::TIMER, [machine, outcome], |emit| emit.counter(0).increment(1));
            }
            Op::Decide { .. } => {
                keys::emit(&keys::DECISION, [machine, outcome], |emit| {
                    emit.counter(0).increment(1);
                    emit.histogram(1).record(seconds);
                    if let Some(attempts) = ended.attempts {
                        emit.histogram(2).record(f64::from(attempts));
                    }
                });
            }
            // A group's callers are each counted by their own watch; a
            // migration or a removal run reports its progress to its caller.
            Op::Group { .. } | Op::Migrate | Op::Remove => {}
        }
        if let Some(error) = error {
            span.in_scope(|| self.failed(id, error));
        }
    }

    fn recovered(&self, id: &str, version: Option<u64>) {
        let machine = self.machine;
        if self.sensitive {
            tracing::info!(target: TARGET, machine, version, "record recovered");
        } else {
            tracing::info!(target: TARGET, machine, id, version, "record recovered");
        }
    }

    /// The event an error deserves, if any: refusals, conflicts (told by the
    /// attempts loop) and open circuits are business as usual.
    fn failed<E: Display>(&self, id: &str, error: &Error<E>) {
        let machine = self.machine;
        let hide = self.sensitive;
        match error {
            Error::FailureRecorded { source, version, .. } if !hide => {
                tracing::warn!(target: TARGET, machine, id, version, error = %source, "failure recorded");
            }
            Error::FailureRecorded { version, .. } => {
                tracing::warn!(target: TARGET, machine, version, "failure recorded");
            }
            Error::Panicked { command, message, .. } if !hide => {
                tracing::error!(target: TARGET, machine, id, command, panic = %message, "transition panicked");
            }
            Error::Panicked { command, .. } => tracing::error!(target: TARGET, machine, command, "transition panicked"),
            Error::Undeclared { command, from, to, .. } => {
                tracing::error!(target: TARGET, machine, command, from, to, "transition produced an undeclared state");
            }
            Error::Decode(decode) => {
                let (what, version, schema) = (decode.what.as_str(), decode.version, decode.schema);
                tracing::error!(target: TARGET, machine, what, version, schema, "stored data does not decode");
            }
            Error::Store(store) if !hide => tracing::warn!(target: TARGET, machine, id, error = %store, "store error"),
            Error::Store(_) => tracing::warn!(target: TARGET, machine, "store error"),
            Error::CircuitOpen { retry_after, .. } => {
                tracing::debug!(target: TARGET, machine, ?retry_after, "refused: circuit open");
            }
            _ => {}
        }
    }
}

pub(super) fn conflict(
    machine: &'static str,
    conflict: &VersionConflict,
    attempt: u32,
    wait: Option<Duration>,
    sensitive: bool,
) {
    let gap = conflict.gap();
    keys::emit(&keys::CONFLICT, [machine], |emit| {
        emit.counter(0).increment(1);
        emit.histogram(1).record(gap as f64);
    });
    on_ours(|span| {
        span.record("gap", gap);
    });
    let (attempted, current) = (conflict.attempted, conflict.current);
    if sensitive {
        tracing::debug!(target: TARGET, machine, attempt, attempted, current, gap, ?wait, "version conflict");
    } else {
        let id = conflict.id.as_str();
        tracing::debug!(target: TARGET, machine, id, attempt, attempted, current, gap, ?wait, "version conflict");
    }
}

pub(super) fn gave_up(
    machine: &'static str,
    conflict: &VersionConflict,
    attempts: u32,
    reason: &'static str,
    elapsed: Duration,
    sensitive: bool,
) {
    keys::emit(&keys::GIVE_UP, [machine, reason], |emit| emit.counter(0).increment(1));
    let gap = conflict.gap();
    if sensitive {
        tracing::warn!(target: TARGET, machine, attempts, reason, gap, ?elapsed, "gave up after conflicts");
    } else {
        let id = conflict.id.as_str();
        tracing::warn!(target: TARGET, machine, id, attempts, reason, gap, ?elapsed, "gave up after conflicts");
    }
}

pub(super) fn timer_refused<E: Display>(machine: &'static str, id: &str, error: &Error<E>, sensitive: bool) {
    if sensitive {
        tracing::warn!(target: TARGET, machine, "timer command refused; timer disarmed");
    } else {
        tracing::warn!(target: TARGET, machine, id, %error, "timer command refused; timer disarmed");
    }
}

pub(super) fn processed(name: &str, delivered: u64, parked: u64) {
    let processor = name.to_owned();
    if delivered > 0 {
        metrics::counter!(PROCESSED, "processor" => processor.clone(), "outcome" => "delivered").increment(delivered);
    }
    if parked > 0 {
        metrics::counter!(PROCESSED, "processor" => processor, "outcome" => "parked").increment(parked);
        tracing::warn!(target: TARGET, processor = name, parked, "entries parked as dead letters");
    }
}

#[allow(clippy::cast_precision_loss)] // a lag far below 2^52
pub(super) fn processor_lag(name: &str, lag: u64) {
    metrics::gauge!(PROCESSOR_LAG, "processor" => name.to_owned()).set(lag as f64);
}

pub(super) fn processor_lease(name: &str, owner: &str, event: &'static str) {
    metrics::counter!(PROCESSOR_LEASES, "processor" => name.to_owned(), "event" => event).increment(1);
    tracing::info!(target: TARGET, processor = name, owner, event, "processor lease");
}

pub(super) fn planned(from: &'static str, to: Option<&'static str>) {
    on_ours(|span| {
        span.record("from", from);
        // A command's span gets `to` from its outcome when it finishes (a
        // coalesced caller's span never sees the plan); only a group's span
        // takes it from the plan. Recording it twice would print it twice.
        if let Some(to) = to
            && span.metadata().is_some_and(|meta| meta.name() == "group_commit")
        {
            span.record("to", to);
        }
    });
}

/// Runs `record` on the current span if it is one of the pipeline's, so a
/// field is never written into a span of the caller's that happens to have
/// a field of the same name.
fn on_ours(record: impl FnOnce(&Span)) {
    let span = Span::current();
    if span.metadata().is_some_and(|meta| meta.target() == TARGET) {
        record(&span);
    }
}

pub(super) fn circuit(machine: &str, from: Phase, to: Phase) {
    let state = match to {
        Phase::Closed => "closed",
        Phase::Open => "open",
        Phase::HalfOpen => "half_open",
    };
    metrics::counter!(CIRCUIT_TRANSITIONS, "machine" => machine.to_owned(), "state" => state).increment(1);
    match (from, to) {
        (Phase::Closed, _) => metrics::gauge!(CIRCUITS_OPEN).increment(1.0),
        (_, Phase::Closed) => metrics::gauge!(CIRCUITS_OPEN).decrement(1.0),
        _ => {}
    }
    match to {
        Phase::Open => tracing::warn!(target: TARGET, machine, "circuit opened: calls refused for the cool-down"),
        Phase::HalfOpen => tracing::info!(target: TARGET, machine, "circuit half-open: probing"),
        Phase::Closed => tracing::info!(target: TARGET, machine, "circuit closed"),
    }
}

pub(super) fn circuits_dropped(open: usize) {
    if open > 0 {
        metrics::gauge!(CIRCUITS_OPEN).decrement(open as f64);
    }
}

pub(super) fn queue(machine: &'static str, before: (usize, usize), now: (usize, usize)) {
    if before.0 != now.0 {
        metrics::gauge!(QUEUE_DEPTH, "machine" => machine).increment(now.0 as f64 - before.0 as f64);
    }
    if before.1 != now.1 {
        metrics::gauge!(DEAD_LETTERS, "machine" => machine).increment(now.1 as f64 - before.1 as f64);
        if now.1 > before.1 {
            metrics::counter!(DEAD_LETTERS_TOTAL, "machine" => machine)
                .increment(u64::try_from(now.1 - before.1).unwrap_or(u64::MAX));
        }
    }
}
