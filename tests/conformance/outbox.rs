//! The outbox on every store: work runs for records entering a kind, its
//! callback is applied once per change even when every entry is delivered
//! again, and a record that moved on ends the entry instead of failing it.

use super::Harness;
use machine_core::prelude::*;
use machine_core::process::{Entry, Outbox, Processor, Progress, Stepped};
use machine_core::store::{Checkpoints, Cursor, Feed};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Parcel {
    #[state(initial)]
    New,
    Packed {
        weight: u32,
    },
    /// Waiting for the carrier's label (the outbox's work).
    Labelling {
        weight: u32,
        notes: u32,
    },
    Labelled {
        label: String,
    },
    Cancelled,
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Parcel)]
pub(crate) enum ParcelCommand {
    #[command(from(New), to(Packed))]
    Pack { weight: u32 },
    #[command(from(Packed), to(Labelling))]
    Ship,
    /// Stays in `Labelling`: not an entry the outbox reacts to.
    #[command(from(Labelling), to(Labelling))]
    Note,
    /// Relabelling is allowed: only the idempotency key stops a redelivered
    /// entry's callback from applying a second label.
    #[command(from(Labelling, Labelled), to(Labelled))]
    Label { label: String },
    #[command(from(Packed, Labelling), to(Cancelled))]
    Cancel,
}

pub(crate) struct Parcels;

impl Machine for Parcels {
    type State = Parcel;
    type Command = ParcelCommand;
    type Deps = ();
    type Error = NotDeclared;
    const NAME: &'static str = "Parcel";

    fn transition((): &(), command: &ParcelCommand, state: &Parcel) -> Result<Parcel, NotDeclared> {
        Ok(match (command, state) {
            (ParcelCommand::Pack { weight }, _) => Parcel::Packed { weight: *weight },
            (ParcelCommand::Ship, Parcel::Packed { weight }) => Parcel::Labelling { weight: *weight, notes: 0 },
            (ParcelCommand::Note, Parcel::Labelling { weight, notes }) => {
                Parcel::Labelling { weight: *weight, notes: notes + 1 }
            }
            (ParcelCommand::Label { label }, _) => Parcel::Labelled { label: label.clone() },
            (ParcelCommand::Cancel, _) => Parcel::Cancelled,
            (command, state) => {
                return Err(NotDeclared { command: command.kind().as_str(), state: state.kind().as_str() });
            }
        })
    }
}

/// Steps until idle; what was processed in all.
async fn drain<St: Checkpoints, H: machine_core::process::Handler<Parcels>>(
    processor: &Processor<Parcels, St, H>,
) -> Progress {
    let mut total = Progress::default();
    for _ in 0..1_000 {
        match processor.step().await.unwrap() {
            Stepped::Idle => return total,
            Stepped::Processed { progress, .. } => {
                total.read += progress.read;
                total.delivered += progress.delivered;
                total.parked += progress.parked;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("never idle");
}

/// Waits (on PostgreSQL only ever briefly) until the feed shows `count` changes.
async fn visible(store: &impl Feed, count: u64) {
    for _ in 0..400 {
        if store.behind(Cursor::START).await.unwrap() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the feed never showed {count} changes");
}

pub(crate) async fn an_outbox_applies_each_callback_once_however_often_delivered(store: impl Harness + Checkpoints) {
    let runner = Runner::<Parcels, _>::new(store.clone(), ());
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    // The carrier answers with a label named after the change and the call:
    // a second call for one change answers differently, as a real service
    // might; the first answer must stand.
    let outbox = Outbox::new(runner.clone(), move |entry: Entry<Parcels>| {
        let call = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let Parcel::Labelling { weight, .. } = entry.after else { panic!("reacts to Labelling only") };
            Ok::<_, String>(Some(ParcelCommand::Label { label: format!("{}-{weight}kg-call{call}", entry.key()) }))
        }
    })
    .on(ParcelKind::Labelling);
    let processor = Processor::new("carrier", runner.clone(), outbox);

    for n in 0..5 {
        let id = format!("p-{n}");
        runner.handle(&id, &ParcelCommand::Pack { weight: n + 1 }).await.unwrap();
        runner.handle(&id, &ParcelCommand::Ship).await.unwrap();
    }
    // Cancelled before the outbox runs: its callback is refused, which ends
    // the entry (not a dead letter).
    runner.handle("p-4", &ParcelCommand::Cancel).await.unwrap();
    visible(&store, 11).await;
    let first = drain(&processor).await;
    assert_eq!(first.parked, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 5, "work runs for the five entries into Labelling only");
    let labels = |runner: Runner<Parcels, _>| async move {
        let mut labels = Vec::new();
        for n in 0..5 {
            labels.push(runner.get(&format!("p-{n}")).await.unwrap().unwrap().state);
        }
        labels
    };
    let before = labels(runner.clone()).await;
    assert_eq!(before[4], Parcel::Cancelled);
    assert!(matches!(&before[0], Parcel::Labelled { label } if label.starts_with("Parcel:p-0:2-1kg-call")));

    // A crash before the checkpoint moved: every entry comes again, the
    // callbacks' own entries included (which are not into Labelling).
    let checkpoint = store.checkpoint("carrier").await.unwrap().unwrap();
    let rewound = store
        .save_checkpoint("carrier", checkpoint.version, Cursor::START, &checkpoint.owner, checkpoint.lease_until)
        .await
        .unwrap();
    assert!(rewound);
    let again = drain(&processor).await;
    assert_eq!(again.parked, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 10, "the service is called again (at least once)");
    assert_eq!(labels(runner.clone()).await, before, "but no callback applied twice");
    for n in 0..4 {
        assert_eq!(runner.history(&format!("p-{n}")).await.unwrap().len(), 3, "pack, ship, one label");
    }
}

pub(crate) async fn an_outbox_ignores_changes_that_stay_in_the_kind(store: impl Harness + Checkpoints) {
    let runner = Runner::<Parcels, _>::new(store.clone(), ());
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let outbox = Outbox::new(runner.clone(), move |_: Entry<Parcels>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<Option<ParcelCommand>, String>(None) }
    })
    .on(ParcelKind::Labelling);
    let processor = Processor::new("notes", runner.clone(), outbox);
    runner.handle("p", &ParcelCommand::Pack { weight: 1 }).await.unwrap();
    runner.handle("p", &ParcelCommand::Ship).await.unwrap();
    for _ in 0..3 {
        runner.handle("p", &ParcelCommand::Note).await.unwrap();
    }
    visible(&store, 5).await;
    let progress = drain(&processor).await;
    assert_eq!((progress.read, progress.parked), (5, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the change into Labelling");
    assert_eq!(runner.get("p").await.unwrap().unwrap().version, 5, "no command without a callback");
}

pub(crate) async fn an_outbox_whose_work_keeps_failing_parks_the_entry(store: impl Harness + Checkpoints) {
    let runner = Runner::<Parcels, _>::new(store.clone(), ());
    let outbox = Outbox::new(runner.clone(), |_: Entry<Parcels>| async {
        Err::<Option<ParcelCommand>, _>("carrier answered 503")
    })
    .on(ParcelKind::Labelling);
    let processor = Processor::new("failing-carrier", runner.clone(), outbox)
        .retry(machine_core::Retry::fixed(Duration::ZERO).max_attempts(2));
    runner.handle("p", &ParcelCommand::Pack { weight: 1 }).await.unwrap();
    runner.handle("p", &ParcelCommand::Ship).await.unwrap();
    visible(&store, 2).await;
    let progress = drain(&processor).await;
    assert_eq!((progress.read, progress.delivered, progress.parked), (2, 1, 1));
    let parked = processor.dead_letters(None, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].id.as_str(), parked[0].version, parked[0].attempts), ("p", 2, 2));
    assert_eq!(parked[0].error, "work failed: carrier answered 503");
    assert_eq!(runner.get("p").await.unwrap().unwrap().version, 2, "no callback was sent");
}
