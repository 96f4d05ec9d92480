//! Records outlive the code that wrote them: a machine declares its schema
//! version and the steps that carry older stored states and commands
//! forward, so records and histories written years ago stay readable as the
//! enums change.
//!
//! Every write stores the machine's [`SCHEMA`](crate::Machine::SCHEMA) next
//! to the state and the command. On read, a payload stored at an older
//! version goes through the machine's [`MIGRATIONS`](crate::Machine::MIGRATIONS),
//! one step per version, as JSON, before it is decoded; a payload stored at
//! the current version is decoded directly (no cost). A payload stored by a
//! *newer* version than the running code is refused with
//! [`DecodeCause::Newer`](crate::DecodeCause::Newer), and the record is never
//! overwritten by the older code.
//!
//! ```
//! use machine_core::evolution::{Migration, MigrationError, json};
//! use serde_json::Value;
//!
//! /// Version 2 renamed the state `Held` to `Reserved`.
//! fn held_is_reserved(state: Value) -> Result<Value, MigrationError> {
//!     Ok(json::rename_variant(state, "Held", "Reserved"))
//! }
//!
//! const MIGRATIONS: &[Migration] = &[Migration::state(1, held_is_reserved)];
//! let upcast = (MIGRATIONS[0].step())(serde_json::json!({ "Held": { "guest": "ada" } })).unwrap();
//! assert_eq!(upcast, serde_json::json!({ "Reserved": { "guest": "ada" } }));
//! ```
//!
//! The recipes (renaming variants, adding, removing and renaming fields,
//! splitting a state, retiring a command, rewriting old records) are in
//! `docs/evolution.md`.

pub use crate::runner::migrate::{Migrated, Progress, Rewrite};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// Which stored payload a migration step upgrades or a decode failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A record's state, or the state a history entry wrote.
    State,
    /// The command of a history entry.
    Command,
    /// The state before a history entry (the previous entry's state).
    StateBefore,
}

impl Payload {
    /// `"state"`, `"command"` or `"state before"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Command => "command",
            Self::StateBefore => "state before",
        }
    }

    /// The payload whose steps apply: a state before is a state.
    const fn steps(self) -> Self {
        match self {
            Self::Command => Self::Command,
            Self::State | Self::StateBefore => Self::State,
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a payload's JSON from schema version `from` to `from + 1`.
pub type Step = fn(Value) -> Result<Value, MigrationError>;

/// A machine's declared change from one schema version to the next, for
/// its states or its commands: a function from the JSON the older version
/// stored to the JSON the next one reads.
///
/// A version with no step for a payload leaves that payload as it is (most
/// versions change either the states or the commands, not both).
#[derive(Clone, Copy)]
pub struct Migration {
    from: u32,
    payload: Payload,
    step: Step,
}

impl Migration {
    /// A step for stored states written at version `from`.
    #[must_use]
    pub const fn state(from: u32, step: Step) -> Self {
        Self { from, payload: Payload::State, step }
    }

    /// A step for stored commands written at version `from`.
    #[must_use]
    pub const fn command(from: u32, step: Step) -> Self {
        Self { from, payload: Payload::Command, step }
    }

    /// The version this step reads (it produces `from + 1`).
    #[must_use]
    pub const fn from(&self) -> u32 {
        self.from
    }

    /// Whether it upgrades states or commands.
    #[must_use]
    pub const fn payload(&self) -> Payload {
        self.payload
    }

    /// The step itself.
    #[must_use]
    pub const fn step(&self) -> Step {
        self.step
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration").field("from", &self.from).field("payload", &self.payload).finish_non_exhaustive()
    }
}

/// A migration step refused a stored payload: it is not a shape the step
/// knows (the step says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MigrationError {
    reason: String,
}

impl MigrationError {
    /// A refusal with `reason` (what was found, what was expected).
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }

    /// Why the step refused.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl From<serde_json::Error> for MigrationError {
    fn from(error: serde_json::Error) -> Self {
        Self::new(error.to_string())
    }
}

/// A step that decodes the older typed shape `Old` and converts it: for
/// changes easier to write in Rust than in JSON. `New` is the next
/// version's shape (often the current type itself, for the last step).
///
/// ```
/// use machine_core::evolution::{MigrationError, retype};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// enum OldPrice { Cents(u64) }
/// #[derive(Serialize)]
/// enum Price { Amount { cents: u64, currency: String } }
///
/// fn cents_become_amounts(json: serde_json::Value) -> Result<serde_json::Value, MigrationError> {
///     retype(json, |OldPrice::Cents(cents)| Price::Amount { cents, currency: "EUR".into() })
/// }
/// let next = cents_become_amounts(serde_json::json!({ "Cents": 250 })).unwrap();
/// assert_eq!(next, serde_json::json!({ "Amount": { "cents": 250, "currency": "EUR" } }));
/// ```
pub fn retype<Old: DeserializeOwned, New: Serialize>(
    json: Value,
    convert: impl FnOnce(Old) -> New,
) -> Result<Value, MigrationError> {
    let old: Old = serde_json::from_value(json)?;
    Ok(serde_json::to_value(convert(old))?)
}

/// Why a declared list of migrations cannot serve a machine (see [`check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMigrations {
    /// The schema version is 0 (versions start at 1).
    #[error("schema version 0 is not a version (versions start at 1)")]
    ZeroSchema,
    /// A step reads a version that is not older than the current one.
    #[error("a {payload} step from version {from} is not below the current schema version {schema}")]
    NotOlder {
        /// What the step upgrades.
        payload: Payload,
        /// The version it reads.
        from: u32,
        /// The machine's schema version.
        schema: u32,
    },
    /// Two steps read the same version of the same payload.
    #[error("two {payload} steps from version {from}")]
    Duplicate {
        /// What the steps upgrade.
        payload: Payload,
        /// The version both read.
        from: u32,
    },
}

/// Checks a machine's declared migrations against its schema version: every
/// step reads a version from 1 to `schema - 1`, at most one per version and
/// payload. Put it in a unit test:
/// `check(Rooms::SCHEMA, Rooms::MIGRATIONS).unwrap()`.
pub fn check(schema: u32, migrations: &[Migration]) -> Result<(), InvalidMigrations> {
    if schema == 0 {
        return Err(InvalidMigrations::ZeroSchema);
    }
    for (n, migration) in migrations.iter().enumerate() {
        let (payload, from) = (migration.payload, migration.from);
        if from == 0 || from >= schema {
            return Err(InvalidMigrations::NotOlder { payload, from, schema });
        }
        if migrations[..n].iter().any(|m| m.payload == payload && m.from == from) {
            return Err(InvalidMigrations::Duplicate { payload, from });
        }
    }
    Ok(())
}

/// Runs the steps for `payload` from version `stored` up to `schema`, in
/// order. On a refusal: the version whose step refused, and why. A step
/// that panics refuses with the panic's message: steps run wherever a
/// record is read, processors and sweepers included, and one old record
/// must not stop them.
pub(crate) fn upcast(
    migrations: &[Migration],
    payload: Payload,
    stored: u32,
    schema: u32,
    mut json: Value,
) -> Result<Value, (u32, MigrationError)> {
    let payload = payload.steps();
    for from in stored..schema {
        if let Some(migration) = migrations.iter().find(|m| m.payload == payload && m.from == from) {
            let step = migration.step;
            json = match crate::panic::catch_sync(move || step(json)) {
                Ok(stepped) => stepped.map_err(|error| (from, error))?,
                Err(panic) => return Err((from, MigrationError::new(format!("the step panicked: {panic}")))),
            };
        }
    }
    Ok(json)
}

/// Small edits of serde's default enum encoding (externally tagged: a unit
/// variant is `"Name"`, any other `{"Name": content}`), the usual material
/// of a migration step.
pub mod json {
    use serde_json::{Map, Value};

    /// The variant name of an externally tagged enum value, if it is one.
    #[must_use]
    pub fn variant(value: &Value) -> Option<&str> {
        match value {
            Value::String(name) => Some(name),
            Value::Object(map) if map.len() == 1 => map.keys().next().map(String::as_str),
            _ => None,
        }
    }

    /// `value` with variant `from` renamed `to` (anything else unchanged).
    #[must_use]
    pub fn rename_variant(value: Value, from: &str, to: &str) -> Value {
        match value {
            Value::String(name) if name == from => Value::String(to.to_owned()),
            Value::Object(mut map) if map.len() == 1 && map.contains_key(from) => {
                let content = map.remove(from).unwrap_or(Value::Null);
                Value::Object(Map::from_iter([(to.to_owned(), content)]))
            }
            other => other,
        }
    }

    /// The fields of variant `name` when `value` is that variant with named
    /// fields (a struct variant), to add, remove or rename them in place.
    pub fn fields_mut<'v>(value: &'v mut Value, name: &str) -> Option<&'v mut Map<String, Value>> {
        match value {
            Value::Object(map) if map.len() == 1 => map.get_mut(name).and_then(Value::as_object_mut),
            _ => None,
        }
    }

    /// Renames field `from` of variant `name` to `to`, if present.
    #[must_use]
    pub fn rename_field(mut value: Value, name: &str, from: &str, to: &str) -> Value {
        if let Some(fields) = fields_mut(&mut value, name)
            && let Some(field) = fields.remove(from)
        {
            fields.insert(to.to_owned(), field);
        }
        value
    }

    /// Adds field `field` with `default` to variant `name`, unless present.
    #[must_use]
    pub fn add_field(mut value: Value, name: &str, field: &str, default: Value) -> Value {
        if let Some(fields) = fields_mut(&mut value, name) {
            fields.entry(field.to_owned()).or_insert(default);
        }
        value
    }

    /// Removes field `field` of variant `name`, if present.
    #[must_use]
    pub fn remove_field(mut value: Value, name: &str, field: &str) -> Value {
        if let Some(fields) = fields_mut(&mut value, name) {
            fields.remove(field);
        }
        value
    }
}

#[cfg(test)]
// Steps have the signature of `Step`, whatever they need of it.
#[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add_one(value: Value) -> Result<Value, MigrationError> {
        Ok(json!(value.as_u64().unwrap_or(0) + 1))
    }

    fn double(value: Value) -> Result<Value, MigrationError> {
        Ok(json!(value.as_u64().unwrap_or(0) * 2))
    }

    fn refuse(value: Value) -> Result<Value, MigrationError> {
        Err(MigrationError::new(format!("not a shape of version 2: {value}")))
    }

    const STEPS: &[Migration] = &[Migration::state(2, double), Migration::state(1, add_one)];

    #[test]
    fn steps_run_in_version_order_from_the_stored_version() {
        assert_eq!(upcast(STEPS, Payload::State, 1, 3, json!(3)).unwrap(), json!(8), "(3 + 1) * 2");
        assert_eq!(upcast(STEPS, Payload::StateBefore, 2, 3, json!(3)).unwrap(), json!(6));
        assert_eq!(upcast(STEPS, Payload::State, 3, 3, json!(3)).unwrap(), json!(3), "current: untouched");
        assert_eq!(upcast(STEPS, Payload::Command, 1, 3, json!(3)).unwrap(), json!(3), "no command steps");
        let refusing = [Migration::command(1, add_one), Migration::command(2, refuse)];
        let (at, error) = upcast(&refusing, Payload::Command, 1, 3, json!(1)).unwrap_err();
        assert_eq!((at, error.reason()), (2, "not a shape of version 2: 2"));
    }

    #[test]
    fn declared_lists_are_checked() {
        assert_eq!(check(3, STEPS), Ok(()));
        assert_eq!(check(1, &[]), Ok(()));
        assert_eq!(check(0, &[]), Err(InvalidMigrations::ZeroSchema));
        assert_eq!(check(2, STEPS), Err(InvalidMigrations::NotOlder { payload: Payload::State, from: 2, schema: 2 }));
        let twice = [Migration::command(1, add_one), Migration::state(1, add_one), Migration::command(1, double)];
        assert_eq!(check(2, &twice), Err(InvalidMigrations::Duplicate { payload: Payload::Command, from: 1 }));
        assert!(matches!(check(2, &[Migration::state(0, add_one)]), Err(InvalidMigrations::NotOlder { .. })));
    }

    #[test]
    fn json_edits_touch_only_their_variant() {
        use super::json::*;
        assert_eq!(rename_variant(json!("Held"), "Held", "Reserved"), json!("Reserved"));
        assert_eq!(rename_variant(json!({"Held": 1}), "Held", "Reserved"), json!({"Reserved": 1}));
        assert_eq!(rename_variant(json!({"Free": 1}), "Held", "Reserved"), json!({"Free": 1}));
        assert_eq!(variant(&json!({"Held": {"a": 1}})), Some("Held"));
        assert_eq!(variant(&json!([1])), None);
        let held = json!({"Held": {"guest": "ada", "phone": "1"}});
        let edited = add_field(remove_field(held, "Held", "phone"), "Held", "channel", json!("direct"));
        assert_eq!(edited, json!({"Held": {"guest": "ada", "channel": "direct"}}));
        assert_eq!(
            rename_field(edited, "Held", "guest", "name"),
            json!({"Held": {"name": "ada", "channel": "direct"}})
        );
        assert_eq!(add_field(json!("Free"), "Free", "x", json!(1)), json!("Free"), "a unit variant has no fields");
    }
}
