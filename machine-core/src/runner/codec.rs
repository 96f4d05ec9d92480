//! Typed states and commands to and from the JSON stores keep, with every
//! error naming the record, stored rows checked against what they claim, and
//! payloads stored at older schema versions carried forward by the
//! machine's migrations (`crate::evolution`) before they are decoded.

use super::outcome::{HistoryEntry, UnreadableEntry, Versioned};
use crate::error::{DecodeCause, DecodeError, Error, StoreError};
use crate::evolution::{Payload, upcast};
use crate::machine::AsyncMachine;
use crate::store::body::{Body, Loaded};
use crate::store::{Change, Origin};
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The record's state, checked: it decodes (migrated from its schema
/// version), and, when stored at the current version, its kind is the kind
/// stored beside it (which kind queries list it under). A contradiction is
/// reported as [`StoreError::Corrupt`], never silently repaired by the next
/// write. An older record's stored kind is its old name, so it is not compared.
pub(crate) fn decode_record<M: AsyncMachine, E>(id: &str, record: &Loaded) -> Result<Versioned<M::State>, Error<E>>
where
    M::State: DeserializeOwned,
{
    let json = record.state.json_of(M::NAME, id, record.version, "state")?;
    let state: M::State = decode::<M, _>(id, record.version, Payload::State, record.schema, &json)?;
    let kind = state.kind().as_str();
    if record.schema == M::SCHEMA && kind != &*record.kind {
        return Err(Error::Store(StoreError::Corrupt {
            machine: M::NAME.to_owned(),
            id: id.to_owned(),
            reason: format!(
                "stored kind {:?} contradicts its state, which is {kind} (at version {})",
                record.kind, record.version
            ),
        }));
    }
    Ok(Versioned { state, version: record.version })
}

/// A state kept beside a record (an idempotency key's outcome): typed as
/// the memory store keeps it, or decoded and checked against its `kind`.
/// Keys do not keep a schema version: the state is read as the current one
/// (a key outlives at most its retention, see `Runner::key_retention`).
pub(crate) fn decode_state<M: AsyncMachine, E>(
    id: &str,
    version: u64,
    kind: Option<&str>,
    body: &Body,
) -> Result<M::State, Error<E>>
where
    M::State: Clone + DeserializeOwned + 'static,
{
    if let Some(state) = body.get::<M::State>() {
        return Ok(state.clone());
    }
    let Some(kind) = kind else {
        let json = body.json_of(M::NAME, id, version, "state")?;
        return Ok(decode::<M, _>(id, version, Payload::State, M::SCHEMA, &json)?);
    };
    let loaded = Loaded { version, kind: Arc::from(kind), state: body.clone(), updated_at: 0, schema: M::SCHEMA };
    Ok(decode_record::<M, E>(id, &loaded)?.state)
}

/// A machine's decoded history entry.
pub(crate) type EntryOf<M> = HistoryEntry<<M as AsyncMachine>::Command, <M as AsyncMachine>::State>;

/// One history entry, decoded; an entry that does not decode is returned
/// whole, with why, so the entries around it still read.
pub(crate) fn decode_change<M: AsyncMachine>(id: &str, change: Change) -> Result<EntryOf<M>, UnreadableEntry>
where
    M::State: DeserializeOwned,
    M::Command: DeserializeOwned,
{
    match decode_parts::<M>(id, &change) {
        Ok(entry) => Ok(entry),
        Err(error) => Err(UnreadableEntry { change: Box::new(change), error }),
    }
}

fn decode_parts<M: AsyncMachine>(id: &str, change: &Change) -> Result<EntryOf<M>, DecodeError>
where
    M::State: DeserializeOwned,
    M::Command: DeserializeOwned,
{
    let version = change.version;
    // A migration rewrite has no command (stored as `null`).
    let command = match change.origin {
        Origin::Migration => None,
        _ => Some(decode::<M, _>(id, version, Payload::Command, change.schema, &change.command)?),
    };
    let before = match (&change.before, change.schema_before) {
        (Some(json), schema) => {
            Some(decode::<M, _>(id, version, Payload::StateBefore, schema.unwrap_or(change.schema), json)?)
        }
        (None, _) => None,
    };
    Ok(HistoryEntry {
        version,
        command,
        before,
        state: decode::<M, _>(id, version, Payload::State, change.schema, &change.after)?,
        origin: change.origin,
        at: change.at,
        schema: change.schema,
    })
}

/// Decodes a payload stored at schema version `schema`: directly at the
/// current version, through the machine's migrations from an older one,
/// and never from a newer one.
pub(crate) fn decode<M: AsyncMachine, T: DeserializeOwned>(
    id: &str,
    version: u64,
    what: Payload,
    schema: u32,
    json: &str,
) -> Result<T, DecodeError> {
    let fail =
        |cause| DecodeError { machine: M::NAME, id: id.to_owned(), version, what, schema, current: M::SCHEMA, cause };
    if schema == M::SCHEMA {
        return serde_json::from_str(json).map_err(|source| fail(DecodeCause::Json(Arc::new(source))));
    }
    if schema > M::SCHEMA {
        return Err(fail(DecodeCause::Newer));
    }
    let value = serde_json::from_str(json).map_err(|source| fail(DecodeCause::Json(Arc::new(source))))?;
    let value = upcast(M::MIGRATIONS, what, schema, M::SCHEMA, value)
        .map_err(|(from, source)| fail(DecodeCause::Migration { from, source }))?;
    serde_json::from_value(value).map_err(|source| fail(DecodeCause::Json(Arc::new(source))))
}

pub(crate) fn encode<M: AsyncMachine, T: Serialize, E>(
    id: &str,
    what: &'static str,
    value: &T,
) -> Result<String, Error<E>> {
    serde_json::to_string(value).map_err(|source| Error::Encode {
        machine: M::NAME,
        id: id.to_owned(),
        what,
        source: Arc::new(source),
    })
}
