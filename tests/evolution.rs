//! The recipes of docs/evolution.md, one test each, on the room machine
//! (docs/snippets/rooms.rs): a row as an older version stored it goes in,
//! the current types come out. And what happens without a migration: a
//! typed error naming the payload, the schema version and the record.

#[allow(unreachable_pub, missing_docs, clippy::unnecessary_wraps, clippy::needless_pass_by_value)]
mod machine {
    include!("../docs/snippets/rooms.rs");
}

use machine::rooms::{Room, RoomCommand, Rooms};
use machine_core::evolution::{self, Payload};
use machine_core::prelude::*;
use machine_core::store::{Commit, Memory, Origin, Store, Write};
use machine_core::{DecodeCause, DecodeError, HistoryEntry};

/// A store holding record `id` with `(kind, state, command)` rows written at
/// schema version `schema`, in order.
async fn stored(schema: u32, rows: &[(&str, &str, &str)]) -> Memory {
    let store = Memory::new();
    for (expected, (kind, state, command)) in (0_u64..).zip(rows) {
        let write = Write {
            machine: "Room",
            id: "r",
            expected,
            kind,
            state: (*state).to_owned(),
            command,
            origin: Origin::Command,
            schema,
            due: None,
        };
        store.commit(Commit::write(write)).await.unwrap();
    }
    store
}

async fn state_of(store: Memory) -> Room {
    Runner::<Rooms, _>::new(store, ()).get("r").await.unwrap().unwrap().state
}

async fn history_of(store: Memory) -> Vec<HistoryEntry<RoomCommand, Room>> {
    let history = Runner::<Rooms, _>::new(store, ()).history("r").await.unwrap();
    history.into_iter().collect::<Result<_, _>>().unwrap()
}

#[test]
fn the_declared_migrations_fit_the_schema_version() {
    evolution::check(Rooms::SCHEMA, Rooms::MIGRATIONS).unwrap();
}

#[tokio::test]
async fn a_renamed_state_reads_under_its_new_name_with_the_added_field() {
    let store = stored(1, &[("Held", r#"{"Held":{"guest":"ada"}}"#, r#"{"Hold":{"guest":"ada"}}"#)]).await;
    assert_eq!(state_of(store).await, Room::Reserved { guest: "ada".into(), channel: "direct".into() });
}

#[tokio::test]
async fn a_renamed_command_reads_under_its_new_name() {
    let store = stored(1, &[("Held", r#"{"Held":{"guest":"ada"}}"#, r#"{"Hold":{"guest":"ada"}}"#)]).await;
    let entry = &history_of(store).await[0];
    assert_eq!(entry.command, Some(RoomCommand::Reserve { guest: "ada".into(), channel: "direct".into() }));
    assert_eq!(entry.schema, 1, "the entry says which version wrote it");
}

#[tokio::test]
async fn a_removed_field_is_dropped_and_an_added_one_defaulted() {
    let booked = r#"{"Booked":{"guest":"ada","nights":3,"phone":"+44"}}"#;
    let store = stored(1, &[("Booked", booked, r#"{"Book":{"nights":3,"phone":"+44"}}"#)]).await;
    assert_eq!(
        state_of(store.clone()).await,
        Room::Booked { guest: "ada".into(), nights: 3, channel: "direct".into() }
    );
    assert_eq!(history_of(store).await[0].command, Some(RoomCommand::Book { nights: 3 }));
}

#[tokio::test]
async fn a_renamed_field_reads_under_its_new_name() {
    let closed = r#"{"Closed":{"guest":"ada","no_show":true}}"#;
    let store = stored(2, &[("Closed", closed, r#"{"Close":{"no_show":true}}"#)]).await;
    assert_eq!(history_of(store).await[0].command, Some(RoomCommand::Close { missed: true }));
}

#[tokio::test]
async fn a_split_state_reads_as_the_one_of_the_two_it_was() {
    for (no_show, split) in
        [(true, Room::NoShow { guest: "ada".into() }), (false, Room::CheckedOut { guest: "ada".into() })]
    {
        let closed = format!(r#"{{"Closed":{{"guest":"ada","no_show":{no_show}}}}}"#);
        // Written by version 1: both steps run, 1 → 2 → 3.
        let store = stored(1, &[("Closed", &closed, r#"{"Close":{"no_show":true}}"#)]).await;
        assert_eq!(state_of(store).await, split);
    }
}

#[tokio::test]
async fn a_retired_command_still_reads_in_history_and_is_refused_if_sent() {
    let booked = r#"{"Booked":{"guest":"ada","nights":3,"phone":""}}"#;
    let store = stored(1, &[("Booked", booked, r#"{"Extend":{"nights":2}}"#)]).await;
    let history = history_of(store.clone()).await;
    assert_eq!(history[0].command, Some(RoomCommand::Retired { command: "Extend".into() }));
    let runner = Runner::<Rooms, _>::new(store, ());
    let refused = runner.handle("r", &RoomCommand::Retired { command: "Extend".into() }).await.unwrap_err();
    assert_eq!(refused.to_string(), "refused: Extend is no longer offered");
}

#[tokio::test]
async fn a_step_that_refuses_is_named_with_its_version() {
    // Closed without its no_show: not a shape version 2 ever wrote.
    let store = stored(2, &[("Closed", r#"{"Closed":{"guest":"ada"}}"#, r#""Release""#)]).await;
    let error = Runner::<Rooms, _>::new(store, ()).get("r").await.unwrap_err();
    let Error::Decode(DecodeError { cause: DecodeCause::Migration { from: 2, .. }, schema: 2, .. }) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        error.to_string(),
        "cannot decode the state of Room \"r\" at version 1: stored by schema version 2, the migration step from \
         version 2 refused it: missing field `no_show`"
    );
}

/// A migration step that panics on a shape it did not expect: the read
/// fails with a typed error naming the record and the step, as a refusal
/// does, instead of unwinding into the caller (a processor, a sweeper).
#[tokio::test]
async fn a_step_that_panics_is_a_typed_error_naming_the_record() {
    use machine_core::store::{Commit, Origin, Write};
    let store = Memory::new();
    let write = |id, state| Write {
        machine: amounts::Account::NAME,
        id,
        expected: 0,
        kind: "Open",
        state,
        command: r#"{"In":1}"#,
        origin: Origin::Command,
        schema: 1,
        due: None,
    };
    store.commit(Commit::write(write("good", r#"{"Open":{"balance":5}}"#.into()))).await.unwrap();
    store.commit(Commit::write(write("odd", r#"{"Open":"no fields"}"#.into()))).await.unwrap();
    let runner = Runner::<amounts::Brittle, _>::new(store, ());
    let error = runner.get("odd").await.unwrap_err();
    let Error::Decode(DecodeError { cause: DecodeCause::Migration { from: 1, .. }, .. }) = &error else {
        panic!("{error:?}")
    };
    assert!(error.to_string().contains("\"odd\""), "{error}");
    assert!(error.to_string().contains("the step panicked: an object under Open"), "{error}");
    let error = runner.handle("odd", &amounts::Pay::In(1)).await.unwrap_err();
    assert!(matches!(error, Error::Decode(_)), "{error:?}");
    // The other records read on.
    assert_eq!(runner.get("good").await.unwrap().unwrap().state, amounts::Account::Open { balance: 500 });
}

/// The machine of issue 14: version 2 added a field and removed a command,
/// and declared no migration.
mod careless {
    use machine_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) enum Room {
        #[state(initial)]
        Free,
        Held {
            guest: String,
            channel: String,
        },
    }

    #[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[command(state = Room)]
    pub(crate) enum RoomCommand {
        #[command(from(Free), to(Held))]
        Hold { guest: String, channel: String },
    }

    pub(crate) struct Rooms;

    impl Machine for Rooms {
        type State = Room;
        type Command = RoomCommand;
        type Deps = ();
        type Error = std::convert::Infallible;
        const SCHEMA: u32 = 2;

        fn transition(
            (): &(),
            RoomCommand::Hold { guest, channel }: &RoomCommand,
            _: &Room,
        ) -> Result<Room, Self::Error> {
            Ok(Room::Held { guest: guest.clone(), channel: channel.clone() })
        }
    }
}

#[tokio::test]
async fn without_a_migration_the_error_says_what_failed_at_which_version() {
    let store = Memory::new();
    let rows = [
        ("Held", r#"{"Held":{"guest":"ada"}}"#, r#"{"Hold":{"guest":"ada"}}"#),
        ("Held", r#"{"Held":{"guest":"ada"}}"#, r#""Ping""#),
    ];
    for (expected, (kind, state, command)) in (0_u64..).zip(rows) {
        let write = Write {
            machine: "Room",
            id: "r9",
            expected,
            kind,
            state: state.to_owned(),
            command,
            origin: Origin::Command,
            schema: 1,
            due: None,
        };
        store.commit(Commit::write(write)).await.unwrap();
    }
    let runner = Runner::<careless::Rooms, _>::new(store, ());
    let error = runner.handle("r9", &careless::RoomCommand::Hold { guest: "bo".into(), channel: "web".into() }).await;
    let error = error.unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot decode the state of Room \"r9\" at version 2: stored by schema version 1 and migrated to 2, it does \
         not decode: missing field `channel`"
    );
    // Every entry is returned on its own, each naming its payload.
    let history = runner.history("r9").await.unwrap();
    let failed: Vec<_> = history.iter().map(|e| e.as_ref().err().map(|u| (u.change.version, u.error.what))).collect();
    assert_eq!(failed, [Some((1, Payload::Command)), Some((2, Payload::Command))], "Hold lacks its channel too");
    let Err(ping) = &history[1] else { unreachable!() };
    assert!(ping.error.to_string().contains("the command of Room \"r9\" at version 2"), "{}", ping.error);
    assert_eq!(&*ping.change.command, "\"Ping\"", "the raw JSON is kept");
}

/// Release 1.0's room machine as it ran, for a store that one process
/// shares between releases: in memory, its runner keeps states typed, as
/// a type the next release does not know.
mod release_one {
    use machine_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) enum Room {
        #[state(initial)]
        Free,
        Held {
            guest: String,
        },
    }

    #[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[command(state = Room)]
    pub(crate) enum RoomCommand {
        #[command(from(Free), to(Held))]
        Hold { guest: String },
    }

    pub(crate) struct Rooms;

    impl Machine for Rooms {
        type State = Room;
        type Command = RoomCommand;
        type Deps = ();
        type Error = std::convert::Infallible;

        fn transition((): &(), RoomCommand::Hold { guest }: &RoomCommand, _: &Room) -> Result<Room, Self::Error> {
            Ok(Room::Held { guest: guest.clone() })
        }
    }
}

#[tokio::test]
async fn a_state_an_older_release_kept_typed_in_memory_is_migrated_by_the_next() {
    let store = Memory::new();
    let old = Runner::<release_one::Rooms, _>::new(store.clone(), ());
    old.handle("r", &release_one::RoomCommand::Hold { guest: "ada".into() }).await.unwrap();
    // The current release finds the record at schema version 1, kept as
    // release 1.0's type: it is migrated, not misread, then written at 3.
    let runner = Runner::<Rooms, _>::new(store.clone(), ());
    let out = runner.handle("r", &RoomCommand::Book { nights: 2 }).await.unwrap();
    let booked = Room::Booked { guest: "ada".into(), nights: 2, channel: "direct".into() };
    assert_eq!((&out.state, out.version, out.attempts), (&booked, 2, 1));
    let history = history_of(store.clone()).await;
    let reserved = Room::Reserved { guest: "ada".into(), channel: "direct".into() };
    assert_eq!(history[0].command, Some(RoomCommand::Reserve { guest: "ada".into(), channel: "direct".into() }));
    assert_eq!((history[0].schema, &history[0].state), (1, &reserved));
    assert_eq!((history[1].schema, history[1].before.as_ref(), &history[1].state), (3, Some(&reserved), &booked));
    // And release 1.0, still running somewhere, refuses what it cannot read.
    let newer = old.handle("r", &release_one::RoomCommand::Hold { guest: "bo".into() }).await.unwrap_err();
    assert!(newer.to_string().contains("schema version 3"), "{newer}");
    assert_eq!(state_of(store).await, booked, "nothing was written over it");
}

/// One state type under two schema versions: version 2 keeps amounts in
/// cents where version 1 kept euros, so a version 1 value means something
/// else although it has the same shape and the same Rust type.
mod amounts {
    use machine_core::evolution::{Migration, MigrationError, json};
    use machine_core::prelude::*;
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) enum Account {
        #[state(initial)]
        New,
        Open {
            balance: i64,
        },
    }

    #[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[command(state = Account)]
    pub(crate) enum Pay {
        #[command(from(New, Open), to(Open))]
        In(i64),
    }

    fn pay_in(Pay::In(amount): &Pay, state: &Account) -> Account {
        let balance = match state {
            Account::New => 0,
            Account::Open { balance } => *balance,
        };
        Account::Open { balance: balance + amount }
    }

    pub(crate) struct InEuros;

    impl Machine for InEuros {
        type State = Account;
        type Command = Pay;
        type Deps = ();
        type Error = std::convert::Infallible;

        fn transition((): &(), command: &Pay, state: &Account) -> Result<Account, Self::Error> {
            Ok(pay_in(command, state))
        }
    }

    pub(crate) struct InCents;

    impl Machine for InCents {
        type State = Account;
        type Command = Pay;
        type Deps = ();
        type Error = std::convert::Infallible;

        const SCHEMA: u32 = 2;
        const MIGRATIONS: &'static [Migration] = &[Migration::state(1, euros_to_cents)];

        fn transition((): &(), command: &Pay, state: &Account) -> Result<Account, Self::Error> {
            Ok(pay_in(command, state))
        }
    }

    /// Version 2 again, with its step written carelessly: it panics on a
    /// shape it did not expect.
    pub(crate) struct Brittle;

    impl Machine for Brittle {
        type State = Account;
        type Command = Pay;
        type Deps = ();
        type Error = std::convert::Infallible;

        const SCHEMA: u32 = 2;
        const MIGRATIONS: &'static [Migration] = &[Migration::state(1, unwrapping)];

        fn transition((): &(), command: &Pay, state: &Account) -> Result<Account, Self::Error> {
            Ok(pay_in(command, state))
        }
    }

    // A step's signature is fixed: this one never refuses, it panics.
    #[allow(clippy::unnecessary_wraps)]
    fn unwrapping(mut state: Value) -> Result<Value, MigrationError> {
        let fields = state["Open"].as_object_mut().expect("an object under Open");
        let euros = fields["balance"].as_i64().expect("a balance");
        fields.insert("balance".into(), Value::from(euros * 100));
        Ok(state)
    }

    fn euros_to_cents(mut state: Value) -> Result<Value, MigrationError> {
        if let Some(fields) = json::fields_mut(&mut state, "Open") {
            let euros =
                fields.get("balance").and_then(Value::as_i64).ok_or_else(|| MigrationError::new("no balance"))?;
            fields.insert("balance".into(), Value::from(euros * 100));
        }
        Ok(state)
    }
}

#[tokio::test]
async fn a_typed_state_of_an_older_schema_version_is_migrated_even_when_its_type_is_the_same() {
    use amounts::{Account, InCents, InEuros, Pay};
    let store = Memory::new();
    let euros = Runner::<InEuros, _>::new(store.clone(), ());
    euros.handle("acct", &Pay::In(5)).await.unwrap();
    let cents = Runner::<InCents, _>::new(store, ());
    let out = cents.handle("acct", &Pay::In(50)).await.unwrap();
    assert_eq!((out.state, out.version), (Account::Open { balance: 550 }, 2), "5 euros are 500 cents");
    let again = cents.handle("acct", &Pay::In(1)).await.unwrap();
    assert_eq!(again.state, Account::Open { balance: 551 }, "and what version 2 wrote is not migrated again");
}
