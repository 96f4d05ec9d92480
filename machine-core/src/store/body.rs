//! A state or a command as the in-process store keeps it: the JSON every
//! store can hold, or the typed value the runner handed over, encoded only
//! when something reads it as JSON (and then once).

use super::Record;
use crate::error::StoreError;
use std::any::Any;
use std::sync::{Arc, OnceLock};

/// A value the runner can hand to the in-process store without encoding it.
pub(crate) trait Payload: Any + Send + Sync {
    /// The value as JSON, encoded on first use and kept.
    fn json(&self) -> Result<Arc<str>, Arc<serde_json::Error>>;
}

/// A typed value and, once asked for, its JSON.
pub(crate) struct Typed<T> {
    value: T,
    json: OnceLock<Result<Arc<str>, Arc<serde_json::Error>>>,
}

impl<T> Typed<T> {
    /// `value`, not yet encoded.
    pub(crate) const fn new(value: T) -> Self {
        Self { value, json: OnceLock::new() }
    }
}

impl<T: serde::Serialize + Send + Sync + 'static> Payload for Typed<T> {
    fn json(&self) -> Result<Arc<str>, Arc<serde_json::Error>> {
        self.json.get_or_init(|| serde_json::to_string(&self.value).map(Arc::from).map_err(Arc::new)).clone()
    }
}

/// A stored state or command.
#[derive(Clone)]
pub(crate) enum Body {
    /// Written as JSON (by [`Store::commit`](super::Store::commit)).
    Json(Arc<str>),
    /// Written typed by the runner.
    Typed(Arc<dyn Payload>),
}

impl Body {
    /// `value`, kept typed.
    pub(crate) fn typed<T: serde::Serialize + Send + Sync + 'static>(value: T) -> Self {
        Self::Typed(Arc::new(Typed::new(value)))
    }

    /// The value as JSON (encoded on first use for a typed value).
    pub(crate) fn json(&self) -> Result<Arc<str>, Arc<serde_json::Error>> {
        match self {
            Self::Json(json) => Ok(json.clone()),
            Self::Typed(payload) => payload.json(),
        }
    }

    /// The value as JSON, or [`StoreError::Corrupt`] naming the record when
    /// a typed value cannot be encoded (`what`: "state", "command").
    pub(crate) fn json_of(&self, machine: &str, id: &str, version: u64, what: &str) -> Result<Arc<str>, StoreError> {
        json_of(self, machine, id, version, what)
    }

    /// The typed value, when it was written typed as a `T`.
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        match self {
            Self::Json(_) => None,
            Self::Typed(payload) => {
                let any: &dyn Any = &**payload;
                any.downcast_ref::<Typed<T>>().map(|typed| &typed.value)
            }
        }
    }
}

/// `payload` as JSON, or [`StoreError::Corrupt`] naming the record when a
/// typed value cannot be encoded (`what`: "state", "command").
pub(crate) fn json_of<P: Payload + ?Sized>(
    payload: &P,
    machine: &str,
    id: &str,
    version: u64,
    what: &str,
) -> Result<Arc<str>, StoreError> {
    payload.json().map_err(|error| StoreError::Corrupt {
        machine: machine.to_owned(),
        id: id.to_owned(),
        reason: format!("the {what} kept in memory at version {version} is not JSON: {error}"),
    })
}

/// A body is a payload too, so that a history entry can hold one inline
/// (see `memory::log::Logged`).
impl Payload for Body {
    fn json(&self) -> Result<Arc<str>, Arc<serde_json::Error>> {
        Self::json(self)
    }
}

/// A loaded record with its state as the store keeps it: what the pipeline
/// plans from.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) version: u64,
    pub(crate) kind: Arc<str>,
    pub(crate) state: Body,
    pub(crate) updated_at: u64,
    pub(crate) schema: u32,
}

impl Loaded {
    /// The record as the [`Store`](super::Store) methods return it.
    pub(crate) fn record(self, machine: &str, id: &str) -> Result<Record, StoreError> {
        let state = self.state.json_of(machine, id, self.version, "state")?;
        Ok(Record { version: self.version, kind: self.kind, state, updated_at: self.updated_at, schema: self.schema })
    }
}

impl From<Record> for Loaded {
    fn from(record: Record) -> Self {
        Self {
            version: record.version,
            kind: record.kind,
            state: Body::Json(record.state),
            updated_at: record.updated_at,
            schema: record.schema,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(json) => f.debug_tuple("Json").field(json).finish(),
            Self::Typed(_) => f.write_str("Typed(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Body;

    #[test]
    fn a_typed_body_is_its_value_and_encodes_once_on_demand() {
        let body = Body::typed(vec![1_u8, 2]);
        assert_eq!(body.get::<Vec<u8>>(), Some(&vec![1, 2]));
        assert_eq!(body.get::<Vec<u16>>(), None, "another type is not this value");
        let first = body.json().unwrap();
        assert_eq!(&*first, "[1,2]");
        assert!(std::sync::Arc::ptr_eq(&first, &body.json().unwrap()), "encoded once");
        assert_eq!(Body::Json("[3]".into()).get::<Vec<u8>>(), None);
    }

    #[test]
    fn a_value_that_cannot_be_json_fails_when_read_as_json() {
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(Body::typed(map).json().is_err());
    }
}
