//! The metric names, public so dashboards and tests can refer to them, and
//! their descriptions for exporters that print them (Prometheus `# HELP`).
//! Names follow the Prometheus conventions: a `machine_` prefix, `_total` on
//! counters, base units (`_seconds`) on durations.

use metrics::Unit;

/// Counter: calls of `handle` and `handle_in` (the retry queue's tries
/// included), by `machine`, `command` (kind) and `outcome`.
pub const COMMANDS: &str = "machine_commands_total";
/// Histogram, seconds: how long a command call took, admission to answer,
/// by `machine`, `command` and `outcome`.
pub const COMMAND_DURATION: &str = "machine_command_duration_seconds";
/// Histogram: attempts a command call took, by `machine` and `command`
/// (recorded for calls that committed or gave up: the others end without
/// the count of attempts their loop made).
pub const COMMAND_ATTEMPTS: &str = "machine_command_attempts";
/// Counter: calls of `recover`, by `machine` and `outcome`.
pub const RECOVERIES: &str = "machine_recoveries_total";
/// Counter: timer commands sent (`Runner::fire`, by sweepers or by hand),
/// by `machine` and `outcome` (`committed`, `not_due` for a record that
/// moved on, `refused`, ...).
pub const TIMERS: &str = "machine_timers_fired_total";
/// Counter: change-feed entries a processor finished, by `processor` (its
/// name) and `outcome` (`delivered`, or `parked` as a dead letter).
pub const PROCESSED: &str = "machine_processor_entries_total";
/// Gauge: changes behind the head of the feed, by `processor`, as last read
/// by `Processor::lag`.
pub const PROCESSOR_LAG: &str = "machine_processor_lag";
/// Counter: a processor instance took a lease it did not hold (a start or a
/// takeover), or lost one to another instance, by `processor` and `event`
/// (`taken`, `lost`).
pub const PROCESSOR_LEASES: &str = "machine_processor_leases_total";
/// Counter: decisions, by `machine` (of the first read) and `outcome`.
pub const DECISIONS: &str = "machine_decisions_total";
/// Histogram, seconds: how long a decision took, by `machine` and `outcome`.
pub const DECISION_DURATION: &str = "machine_decision_duration_seconds";
/// Histogram: attempts a decision took, by `machine`.
pub const DECISION_ATTEMPTS: &str = "machine_decision_attempts";
/// Counter: lost races (one per conflicting attempt), by `machine`.
pub const CONFLICTS: &str = "machine_conflicts_total";
/// Histogram: the version gap of each conflict (how many writes overtook
/// the loser), by `machine`.
pub const CONFLICT_GAP: &str = "machine_conflict_gap";
/// Counter: loops the retry policy stopped, by `machine` and `reason`
/// (`retries_exhausted`, `thrashing`, `deadline_exceeded`,
/// `budget_exhausted`); a coalesced group counts once.
pub const GIVE_UPS: &str = "machine_give_ups_total";
/// Histogram: commands per group commit of a coalesced record, by `machine`.
pub const GROUP_COMMIT_SIZE: &str = "machine_group_commit_size";
/// Gauge: circuits of every circuit breaker in the process that are not
/// closed (open or half-open); 0 when every circuit lets calls through.
pub const CIRCUITS_OPEN: &str = "machine_circuit_breaker_open";
/// Counter: circuit transitions, by `machine` (of the call that caused it)
/// and `state` entered (`open`, `half_open`, `closed`).
pub const CIRCUIT_TRANSITIONS: &str = "machine_circuit_breaker_transitions_total";
/// Gauge: commands in retry queues (waiting or being tried), by `machine`.
pub const QUEUE_DEPTH: &str = "machine_retry_queue_depth";
/// Gauge: dead letters held by retry queues, by `machine`.
pub const DEAD_LETTERS: &str = "machine_retry_queue_dead_letters";
/// Counter: commands that became dead letters, by `machine`.
pub const DEAD_LETTERS_TOTAL: &str = "machine_retry_queue_dead_letters_total";

/// Tells the installed `metrics` recorder what every metric above means and
/// its unit (Prometheus prints them as `# HELP` lines). Call it once, after
/// installing the recorder; metrics are emitted whether or not it is called.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(COMMANDS, Unit::Count, "Command calls (handle, handle_in, retry-queue tries) by outcome");
    describe_histogram!(COMMAND_DURATION, Unit::Seconds, "Duration of a command call, admission to answer");
    describe_histogram!(COMMAND_ATTEMPTS, Unit::Count, "Attempts a command call took");
    describe_counter!(RECOVERIES, Unit::Count, "Recover calls by outcome");
    describe_counter!(TIMERS, Unit::Count, "Timer commands sent to due records, by outcome");
    describe_counter!(PROCESSED, Unit::Count, "Change-feed entries a processor delivered or parked");
    describe_gauge!(PROCESSOR_LAG, Unit::Count, "Changes behind the head of the feed, per processor");
    describe_counter!(PROCESSOR_LEASES, Unit::Count, "Processor leases taken or lost");
    describe_counter!(DECISIONS, Unit::Count, "Decisions by outcome");
    describe_histogram!(DECISION_DURATION, Unit::Seconds, "Duration of a decision");
    describe_histogram!(DECISION_ATTEMPTS, Unit::Count, "Attempts a decision took");
    describe_counter!(CONFLICTS, Unit::Count, "Lost races (version conflicts), one per conflicting attempt");
    describe_histogram!(CONFLICT_GAP, Unit::Count, "Writes that overtook the loser of a conflict");
    describe_counter!(GIVE_UPS, Unit::Count, "Attempt loops the retry policy stopped, by reason");
    describe_histogram!(GROUP_COMMIT_SIZE, Unit::Count, "Commands per group commit of a coalesced record");
    describe_gauge!(CIRCUITS_OPEN, Unit::Count, "Circuits not closed (open or half-open)");
    describe_counter!(CIRCUIT_TRANSITIONS, Unit::Count, "Circuit breaker transitions by state entered");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Commands in retry queues, waiting or being tried");
    describe_gauge!(DEAD_LETTERS, Unit::Count, "Dead letters held by retry queues");
    describe_counter!(DEAD_LETTERS_TOTAL, Unit::Count, "Commands that became dead letters");
}
