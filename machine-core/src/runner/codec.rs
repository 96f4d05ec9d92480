//! Typed states and commands to and from the JSON stores keep, with every
//! error naming the record, and stored rows checked against what they claim.

use super::outcome::{HistoryEntry, Versioned};
use crate::error::{Error, StoreError};
use crate::machine::AsyncMachine;
use crate::store::Change;
use crate::store::body::{Body, Loaded};
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The record's state, checked: it decodes, and its kind is the kind stored
/// beside it (which kind queries list it under). A contradiction is reported
/// as [`StoreError::Corrupt`], never silently repaired by the next write.
pub(crate) fn decode_record<M: AsyncMachine, E>(id: &str, record: &Loaded) -> Result<Versioned<M::State>, Error<E>>
where
    M::State: DeserializeOwned,
{
    let json = record.state.json_of(M::NAME, id, record.version, "state")?;
    let state: M::State = decode::<M, _, E>(id, record.version, "state", &json)?;
    let kind = state.kind().as_str();
    if kind != &*record.kind {
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
        return decode::<M, _, E>(id, version, "state", &json);
    };
    let loaded = Loaded { version, kind: Arc::from(kind), state: body.clone(), updated_at: 0 };
    Ok(decode_record::<M, E>(id, &loaded)?.state)
}

/// A machine's decoded history entry.
pub(crate) type EntryOf<M> = HistoryEntry<<M as AsyncMachine>::Command, <M as AsyncMachine>::State>;

/// One history entry, decoded.
pub(crate) fn decode_change<M: AsyncMachine>(id: &str, change: &Change) -> Result<EntryOf<M>, Error<M::Error>>
where
    M::State: DeserializeOwned,
    M::Command: DeserializeOwned,
{
    let version = change.version;
    Ok(HistoryEntry {
        version,
        command: decode::<M, _, _>(id, version, "command", &change.command)?,
        before: change
            .before
            .as_deref()
            .map(|json| decode::<M, _, _>(id, version, "state before", json))
            .transpose()?,
        state: decode::<M, _, _>(id, version, "state", &change.after)?,
        origin: change.origin,
        at: change.at,
    })
}

fn decode<M: AsyncMachine, T: DeserializeOwned, E>(
    id: &str,
    version: u64,
    what: &'static str,
    json: &str,
) -> Result<T, Error<E>> {
    serde_json::from_str(json).map_err(|source| Error::Decode {
        machine: M::NAME,
        id: id.to_owned(),
        version,
        what,
        source: Arc::new(source),
    })
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
