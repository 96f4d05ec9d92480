//! What the `observe` feature emits, asserted through a debugging recorder
//! and a capturing subscriber (`capture`): the same metrics and spans
//! whichever driver a change came through — a command, a recorded failure
//! and its recovery, conflicts retried or given up, a coalesced group, a
//! decision, the retry queue, a circuit breaker — and nothing that names a
//! record of a sensitive machine.

mod capture;

use capture::observe;
use machine_core::decision::{Decision, Key, Verdict};
use machine_core::observe::{
    CIRCUIT_TRANSITIONS, CIRCUITS_OPEN, COMMAND_ATTEMPTS, COMMAND_DURATION, COMMANDS, CONFLICT_GAP, CONFLICTS,
    DEAD_LETTERS, DEAD_LETTERS_TOTAL, DECISIONS, GIVE_UPS, GROUP_COMMIT_SIZE, QUEUE_DEPTH, RECOVERIES,
};
use machine_core::prelude::*;
use machine_core::queue::RetryQueue;
use machine_core::retry::{Call, CircuitBreaker, Finish};
use machine_core::store::Memory;
use machine_core::testing::{FaultyStore, Schedule};
use machine_core::{AsyncMachine, Coalescing};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Level;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tally {
    #[state(initial)]
    Zero,
    Counting(u64),
    #[state(failure)]
    Failed(Failure<Step, Tally>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Tally)]
enum Step {
    /// Adds; adding 0 is refused.
    #[command(from(Zero, Counting), to(Counting))]
    Add(u64),
    /// Adds 1 while the deps say the backend is up, fails otherwise.
    #[command(from(Zero, Counting), to(Counting))]
    Flaky,
}

#[derive(Debug, thiserror::Error)]
enum TallyError {
    #[error("nothing to add")]
    Nothing,
    #[error("backend down: secret-detail")]
    Down,
}

fn next(up: &AtomicBool, step: &Step, state: &Tally) -> Result<Tally, TallyError> {
    let now = match state {
        Tally::Counting(n) => *n,
        _ => 0,
    };
    match step {
        Step::Add(0) => Err(TallyError::Nothing),
        Step::Add(n) => Ok(Tally::Counting(now + n)),
        Step::Flaky if up.load(Ordering::SeqCst) => Ok(Tally::Counting(now + 1)),
        Step::Flaky => Err(TallyError::Down),
    }
}

struct Tallies;

impl Machine for Tallies {
    type State = Tally;
    type Command = Step;
    type Deps = AtomicBool;
    type Error = TallyError;
    fn transition(up: &AtomicBool, step: &Step, state: &Tally) -> Result<Tally, TallyError> {
        next(up, step, state)
    }
}

impl RecordFailures for Tallies {
    fn failure(error: &TallyError) -> Option<String> {
        matches!(error, TallyError::Down).then(|| error.to_string())
    }
}

/// The same machine, marked sensitive.
struct Secrets;

impl Machine for Secrets {
    type State = Tally;
    type Command = Step;
    type Deps = AtomicBool;
    type Error = TallyError;
    const NAME: &'static str = "Secret";
    const SENSITIVE: bool = true;
    fn transition(up: &AtomicBool, step: &Step, state: &Tally) -> Result<Tally, TallyError> {
        next(up, step, state)
    }
}

impl RecordFailures for Secrets {
    fn failure(error: &TallyError) -> Option<String> {
        matches!(error, TallyError::Down).then(|| error.to_string())
    }
}

const MACHINE: &str = "Tally";

fn up() -> AtomicBool {
    AtomicBool::new(true)
}

#[test]
fn a_committed_command_is_counted_timed_and_spanned() {
    let (out, seen) = observe(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), up());
        runner.handle("t-1", &Step::Add(2)).await
    });
    assert_eq!(out.unwrap().version, 1);
    let labels = [("machine", MACHINE), ("command", "Add"), ("outcome", "committed")];
    assert_eq!(seen.counter(COMMANDS, &labels), 1);
    assert_eq!(seen.histogram(COMMAND_DURATION, &labels).len(), 1);
    assert_eq!(seen.histogram(COMMAND_ATTEMPTS, &[("machine", MACHINE), ("command", "Add")]), vec![1.0]);
    let spans = seen.spans("handle");
    assert_eq!(spans.len(), 1);
    let fields = &spans[0].fields;
    for (field, value) in [
        ("machine", "Tally"),
        ("id", "t-1"),
        ("command", "Add"),
        ("from", "Zero"),
        ("to", "Counting"),
        ("version", "1"),
        ("attempts", "1"),
        ("outcome", "committed"),
    ] {
        assert_eq!(fields.get(field).map(String::as_str), Some(value), "{field} in {fields:?}");
    }
    assert!(!fields.contains_key("gap"), "no conflict, no gap");
    assert!(seen.events.iter().all(|e| e.level > Level::INFO), "INFO stays quiet: {:?}", seen.events);
}

/// The pipeline keeps each label set's metric keys per thread: keys made
/// while no recorder was installed must reach one installed later, and two
/// machines' or outcomes' keys must never be mixed up.
#[test]
fn metrics_reach_a_recorder_installed_later_with_each_label_set_apart() {
    let before = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    before.block_on(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), up());
        runner.handle("t-1", &Step::Add(1)).await.expect("commits");
        let _ = runner.handle("t-1", &Step::Add(0)).await;
    });
    let ((), seen) = observe(async {
        let tallies = Runner::<Tallies, _>::new(Memory::new(), up());
        let secrets = Runner::<Secrets, _>::new(Memory::new(), up());
        for _ in 0..3 {
            tallies.handle("t-1", &Step::Add(1)).await.expect("commits");
        }
        secrets.handle("s-1", &Step::Add(1)).await.expect("commits");
        for _ in 0..2 {
            assert!(tallies.handle("t-1", &Step::Add(0)).await.is_err());
        }
    });
    let counted =
        |machine, outcome| seen.counter(COMMANDS, &[("machine", machine), ("command", "Add"), ("outcome", outcome)]);
    assert_eq!(counted(MACHINE, "committed"), 3);
    assert_eq!(counted("Secret", "committed"), 1);
    assert_eq!(counted(MACHINE, "refused"), 2);
    assert_eq!(counted("Secret", "refused"), 0);
    let attempts = seen.histogram(COMMAND_ATTEMPTS, &[("machine", MACHINE), ("command", "Add")]);
    assert_eq!(attempts, vec![1.0; 3], "only the commits count their attempts");
}

#[test]
fn refusals_are_counted_by_kind_and_log_nothing() {
    let ((), seen) = observe(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), up());
        assert!(matches!(runner.handle("t-1", &Step::Add(0)).await, Err(Error::Rejected(_))));
        runner.handle("t-1", &Step::Add(1)).await.unwrap();
    });
    assert_eq!(seen.counter(COMMANDS, &[("machine", MACHINE), ("command", "Add"), ("outcome", "refused")]), 1);
    assert_eq!(seen.counter(COMMANDS, &[("machine", MACHINE), ("command", "Add"), ("outcome", "committed")]), 1);
    let refused = seen.spans("handle").into_iter().find(|s| s.fields["outcome"] == "refused").expect("span");
    assert_eq!(refused.fields.get("from").map(String::as_str), Some("Zero"));
    assert!(seen.events.is_empty(), "a refusal is business as usual: {:?}", seen.events);
}

#[test]
fn a_conflict_then_success_counts_the_conflict_and_tells_it_at_debug() {
    let (out, seen) = observe(async {
        let store = FaultyStore::new(Memory::new()).conflicts(Schedule::first(1));
        let runner = Runner::<Tallies, _>::new(store, up()).retry(Retry::fixed(Duration::ZERO));
        runner.handle("hot-1", &Step::Add(1)).await
    });
    assert_eq!(out.unwrap().attempts, 2);
    assert_eq!(seen.counter(CONFLICTS, &[("machine", MACHINE)]), 1);
    assert_eq!(seen.histogram(CONFLICT_GAP, &[("machine", MACHINE)]), vec![1.0]);
    assert_eq!(seen.histogram(COMMAND_ATTEMPTS, &[("machine", MACHINE), ("command", "Add")]), vec![2.0]);
    let conflicts = seen.events("version conflict");
    assert_eq!(conflicts.len(), 1);
    let conflict = conflicts[0];
    assert_eq!(conflict.level, Level::DEBUG);
    assert_eq!(conflict.span, Some("handle"));
    assert_eq!(conflict.fields["id"], "hot-1", "the hot record is named");
    assert_eq!(conflict.fields["gap"], "1");
    assert_eq!(conflict.fields["wait"], "Some(0ns)");
    let span = &seen.spans("handle")[0].fields;
    assert_eq!((span["attempts"].as_str(), span["gap"].as_str()), ("2", "1"));
}

#[test]
fn a_give_up_is_counted_by_reason_and_warned_once() {
    let (out, seen) = observe(async {
        let store = FaultyStore::new(Memory::new()).conflicts(Schedule::every(1));
        let runner = Runner::<Tallies, _>::new(store, up()).retry(Retry::fixed(Duration::ZERO).max_attempts(3));
        runner.handle("hot-1", &Step::Add(1)).await
    });
    assert!(matches!(out, Err(Error::RetriesExhausted { attempts: 3, .. })));
    assert_eq!(seen.counter(COMMANDS, &[("machine", MACHINE), ("command", "Add"), ("outcome", "gave_up")]), 1);
    assert_eq!(seen.counter(GIVE_UPS, &[("machine", MACHINE), ("reason", "retries_exhausted")]), 1);
    assert_eq!(seen.counter(CONFLICTS, &[("machine", MACHINE)]), 3);
    assert_eq!(seen.histogram(COMMAND_ATTEMPTS, &[("machine", MACHINE), ("command", "Add")]), vec![3.0]);
    let warnings: Vec<_> = seen.events.iter().filter(|e| e.level == Level::WARN).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].message, "gave up after conflicts");
    assert_eq!(warnings[0].fields["attempts"], "3");
    assert_eq!(warnings[0].fields["id"], "hot-1");
    assert_eq!(seen.events("version conflict").len(), 3);
}

#[test]
fn a_recorded_failure_warns_and_its_recovery_is_told_at_info() {
    let ((), seen) = observe(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), AtomicBool::new(false)).record_failures();
        assert!(matches!(runner.handle("t-1", &Step::Flaky).await, Err(Error::FailureRecorded { version: 1, .. })));
        runner.deps().store(true, Ordering::SeqCst);
        assert_eq!(runner.recover("t-1").await.unwrap().state, Tally::Counting(1));
    });
    assert_eq!(seen.counter(COMMANDS, &[("machine", MACHINE), ("command", "Flaky"), ("outcome", "failed")]), 1);
    assert_eq!(seen.counter(RECOVERIES, &[("machine", MACHINE), ("outcome", "committed")]), 1);
    let failed = seen.events("failure recorded");
    assert_eq!((failed.len(), failed[0].level), (1, Level::WARN));
    assert_eq!(failed[0].fields["error"], "backend down: secret-detail");
    assert_eq!(failed[0].fields["version"], "1");
    let recovered = seen.events("record recovered");
    assert_eq!((recovered.len(), recovered[0].level), (1, Level::INFO));
    assert_eq!(recovered[0].fields["version"], "2");
    let recover = &seen.spans("recover")[0].fields;
    assert_eq!((recover["from"].as_str(), recover["to"].as_str()), ("Failed", "Counting"));
}

#[test]
fn a_coalesced_group_is_one_group_commit_span_and_every_caller_is_counted() {
    const CALLERS: u32 = 5;
    let ((), seen) = observe(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), up()).coalesce(Coalescing::default());
        let calls: Vec<_> = (0..CALLERS)
            .map(|_| {
                let runner = runner.clone();
                tokio::spawn(async move { runner.handle("hot", &Step::Add(1)).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    });
    let committed = [("machine", MACHINE), ("command", "Add"), ("outcome", "committed")];
    assert_eq!(seen.counter(COMMANDS, &committed), u64::from(CALLERS));
    let sizes = seen.histogram(GROUP_COMMIT_SIZE, &[("machine", MACHINE)]);
    let grouped: f64 = sizes.iter().sum();
    assert!((grouped - f64::from(CALLERS)).abs() < 1e-9, "every command in a group commit: {sizes:?}");
    assert!(sizes.iter().any(|size| *size > 1.0), "some commands shared a commit: {sizes:?}");
    let groups = seen.spans("group_commit");
    assert_eq!(groups.len(), sizes.len());
    assert!(groups.iter().all(|g| g.fields["outcome"] == "committed" && g.fields["id"] == "hot"));
    assert_eq!(seen.spans("handle").len(), 5, "one span per caller");
}

#[test]
fn a_sensitive_machine_names_no_record_and_no_error() {
    let ((), seen) = observe(async {
        let store = FaultyStore::new(Memory::new()).conflicts(Schedule::first(1));
        let runner = Runner::<Secrets, _>::new(store, AtomicBool::new(false))
            .record_failures()
            .retry(Retry::fixed(Duration::ZERO));
        assert!(runner.handle("alice@example.com", &Step::Flaky).await.is_err());
        let key = Key::<Secrets>::new("bob@example.com");
        let decided = Decision::new(runner.store()).read(&key).attempt(|_| Ok(Verdict::Commit(()))).await;
        assert!(decided.is_ok());
    });
    assert_eq!(seen.events("version conflict").len(), 1);
    assert_eq!(seen.events("failure recorded").len(), 1);
    assert!(!seen.mentions("alice"), "no id: {seen:?}");
    assert!(!seen.mentions("bob"), "no id: {seen:?}");
    assert!(!seen.mentions("secret-detail"), "no error text: {seen:?}");
    assert_eq!(seen.counter(COMMANDS, &[("machine", "Secret"), ("command", "Flaky"), ("outcome", "failed")]), 1);
}

#[test]
fn decisions_are_counted_by_verdict() {
    let ((), seen) = observe(async {
        let store = Memory::new();
        let key = Key::<Tallies>::new("d-1");
        let deps = up();
        for abort in [false, true] {
            let decided = Decision::new(&store)
                .read(&key)
                .attempt(|draft| {
                    if abort {
                        return Ok(Verdict::Abort("no".into()));
                    }
                    draft.apply(&key, &deps, &Step::Add(1))?;
                    Ok(Verdict::Commit(()))
                })
                .await;
            assert!(decided.is_ok());
        }
    });
    assert_eq!(seen.counter(DECISIONS, &[("machine", MACHINE), ("outcome", "committed")]), 1);
    assert_eq!(seen.counter(DECISIONS, &[("machine", MACHINE), ("outcome", "aborted")]), 1);
    let spans = seen.spans("decision");
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|s| s.fields["reads"] == "1" && s.fields["attempts"] == "1"));
}

#[test]
fn the_retry_queue_reports_its_depth_and_dead_letters() {
    let ((), seen) = observe(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), up());
        let queue = RetryQueue::builder(runner).max_tries(1).start();
        queue.submit("q-1", Step::Add(1)).unwrap();
        queue.submit("q-2", Step::Add(0)).unwrap(); // refused: a dead letter
        let report = queue.shutdown(Duration::from_secs(5)).await;
        assert_eq!((report.completed, report.dead_letters.len()), (1, 1));
    });
    let machine = [("machine", MACHINE)];
    assert_eq!(seen.counter(DEAD_LETTERS_TOTAL, &machine), 1);
    assert!(seen.gauge(QUEUE_DEPTH, &machine).abs() < f64::EPSILON, "drained");
    assert!(seen.gauge(DEAD_LETTERS, &machine).abs() < f64::EPSILON, "handed over by shutdown");
    assert_eq!(seen.counter(COMMANDS, &[("machine", MACHINE), ("command", "Add"), ("outcome", "refused")]), 1);
}

#[test]
fn a_circuit_breaker_reports_open_circuits_and_transitions() {
    let trip = || async {
        let breaker = CircuitBreaker::new(2, Duration::from_mins(1));
        let call = Call::new(MACHINE, "c-1");
        for _ in 0..2 {
            breaker.admit(&call).unwrap();
            breaker.record(&call, Finish::GaveUp);
        }
        assert!(breaker.admit(&call).is_err());
        breaker
    };
    // Kept past the snapshot: its circuit is still open.
    let (breaker, seen) = observe(trip());
    assert!((seen.gauge(CIRCUITS_OPEN, &[]) - 1.0).abs() < f64::EPSILON);
    assert_eq!(seen.counter(CIRCUIT_TRANSITIONS, &[("machine", MACHINE), ("state", "open")]), 1);
    let opened = seen.events("circuit opened: calls refused for the cool-down");
    assert_eq!((opened.len(), opened[0].level), (1, Level::WARN));
    drop(breaker);
    // Dropped inside: its open circuit leaves the gauge with it.
    let ((), seen) = observe(async { drop(trip().await) });
    assert!(seen.gauge(CIRCUITS_OPEN, &[]).abs() < f64::EPSILON);
}

/// The blanket `AsyncMachine` impl of a `Machine` keeps its sensitivity,
/// so runners and decisions (which take any `AsyncMachine`) see it.
#[test]
fn sensitivity_is_mirrored_for_async_machines() {
    fn sensitive<M: AsyncMachine>() -> bool {
        M::SENSITIVE
    }
    assert!(sensitive::<Secrets>());
    assert!(!sensitive::<Tallies>());
}

#[test]
fn processors_count_entries_lag_and_leases_and_timers_count_fires() {
    use machine_core::observe::{PROCESSED, PROCESSOR_LAG, PROCESSOR_LEASES, TIMERS};
    use machine_core::process::{Entry, Processor, Stepped};
    let ((), seen) = observe(async {
        let runner = Runner::<Tallies, _>::new(Memory::new(), up());
        for n in 1..=3 {
            runner.handle(&format!("t-{n}"), &Step::Add(n)).await.unwrap();
        }
        let handler = |entry: Entry<Tallies>| async move {
            if entry.id == "t-2" { Err("refused by the handler") } else { Ok(()) }
        };
        let processor = Processor::new("audit", runner.clone(), handler)
            .retry(machine_core::Retry::fixed(Duration::ZERO).max_attempts(1));
        assert_eq!(processor.lag().await.unwrap(), 3);
        assert!(matches!(processor.step().await.unwrap(), Stepped::Processed { .. }));
        assert_eq!(processor.lag().await.unwrap(), 0);
        // Tallies declare no timers: a fire is `not_due`.
        assert!(matches!(runner.fire("t-1").await, Err(Error::NotDue { .. })));
    });
    assert_eq!(seen.counter(PROCESSED, &[("processor", "audit"), ("outcome", "delivered")]), 2);
    assert_eq!(seen.counter(PROCESSED, &[("processor", "audit"), ("outcome", "parked")]), 1);
    assert_eq!(seen.counter(PROCESSOR_LEASES, &[("processor", "audit"), ("event", "taken")]), 1);
    assert!(seen.gauge(PROCESSOR_LAG, &[("processor", "audit")]).abs() < f64::EPSILON, "lag 0 last read");
    assert_eq!(seen.counter(TIMERS, &[("machine", MACHINE), ("outcome", "not_due")]), 1);
    assert!(
        seen.events.iter().any(|e| e.level == Level::WARN && e.message.contains("dead letters")),
        "{:?}",
        seen.events
    );
}
