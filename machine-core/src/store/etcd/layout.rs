//! The etcd store's keys and values, in one place: how a record, a history
//! entry and a kind-index entry are named and encoded, and how stored bytes
//! are read back, with anything this store would never have written named
//! as [`StoreError::Corrupt`] instead of accepted.

use crate::error::StoreError;
use crate::store::record::{Change, Cursor, Origin, Record};
use crate::store::{Remember, Remembered};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Separates the parts of a key: ids and machine names cannot hold it
/// (`validate_id`), so a key splits back into its parts unambiguously.
const SEP: u8 = 0;

/// Stands in for a machine name or id that cannot be read as text.
pub(super) const UNREADABLE: &str = "(unreadable)";

/// Builds the keys under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: Vec<u8>,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.as_bytes().to_vec() }
    }

    fn with(&self, space: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let len = parts.iter().map(|p| p.len() + 1).sum::<usize>() + self.prefix.len() + space.len();
        let mut key = Vec::with_capacity(len);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(space);
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                key.push(SEP);
            }
            key.extend_from_slice(part);
        }
        key
    }

    /// `{prefix}r/{machine}\0{id}`: the record.
    pub(super) fn record(&self, machine: &str, id: &str) -> Vec<u8> {
        self.with(b"r/", &[machine.as_bytes(), id.as_bytes()])
    }

    /// Every record of one machine: `{prefix}r/{machine}\0`.
    pub(super) fn records_of(&self, machine: &str) -> Vec<u8> {
        let mut key = self.with(b"r/", &[machine.as_bytes()]);
        key.push(SEP);
        key
    }

    /// `{prefix}h/{machine}\0{id}\0{version:020}`: one history entry; the
    /// zero-padded version makes key order version order.
    pub(super) fn history(&self, machine: &str, id: &str, version: u64) -> Vec<u8> {
        self.with(b"h/", &[machine.as_bytes(), id.as_bytes(), format!("{version:020}").as_bytes()])
    }

    /// Every history entry of one record: `{prefix}h/{machine}\0{id}\0`.
    pub(super) fn history_of(&self, machine: &str, id: &str) -> Vec<u8> {
        let mut key = self.with(b"h/", &[machine.as_bytes(), id.as_bytes()]);
        key.push(SEP);
        key
    }

    /// `{prefix}h/{machine}\0{id}\x01{revision:020}`: the removal entry of
    /// the record whose last write was at `revision`. Under `h/`, so the
    /// feed watches it, but outside the record's own history range
    /// (`\x01` sorts after the `\0` that range starts with), so a record
    /// created again under the id never reads it as history, and a removal
    /// deletes that range in the same transaction without touching it. The
    /// revision tells the removals of one id apart.
    pub(super) fn removal(&self, machine: &str, id: &str, revision: i64) -> Vec<u8> {
        let mut key = self.with(b"h/", &[machine.as_bytes(), id.as_bytes()]);
        key.push(REMOVAL);
        key.extend_from_slice(format!("{:020}", revision.max(0)).as_bytes());
        key
    }

    /// Every idempotency key of one record: `{prefix}i/{machine}\0{id}\0`.
    pub(super) fn idempotency_of(&self, machine: &str, id: &str) -> Vec<u8> {
        let mut key = self.with(b"i/", &[machine.as_bytes(), id.as_bytes()]);
        key.push(SEP);
        key
    }

    /// Every history entry of the store: `{prefix}h/`.
    pub(super) fn all_history(&self) -> Vec<u8> {
        self.with(b"h/", &[])
    }

    /// `{prefix}k/{machine}\0{kind}\0{id}`: the kind index, empty values.
    pub(super) fn kind(&self, machine: &str, kind: &str, id: &str) -> Vec<u8> {
        self.with(b"k/", &[machine.as_bytes(), kind.as_bytes(), id.as_bytes()])
    }

    /// Every index entry of one kind: `{prefix}k/{machine}\0{kind}\0`.
    pub(super) fn kind_of(&self, machine: &str, kind: &str) -> Vec<u8> {
        let mut key = self.with(b"k/", &[machine.as_bytes(), kind.as_bytes()]);
        key.push(SEP);
        key
    }

    /// `{prefix}i/{machine}\0{id}\0{key}`: an idempotency key.
    pub(super) fn idempotency(&self, machine: &str, id: &str, key: &str) -> Vec<u8> {
        self.with(b"i/", &[machine.as_bytes(), id.as_bytes(), key.as_bytes()])
    }

    /// Every idempotency key of the store: `{prefix}i/`.
    pub(super) fn all_idempotency(&self) -> Vec<u8> {
        self.with(b"i/", &[])
    }

    /// `{prefix}d/{machine}\0{due:020}\0{id}`: the due-time index, the
    /// record's version as its value; the zero-padded time makes key order
    /// due order.
    pub(super) fn due(&self, machine: &str, due: u64, id: &str) -> Vec<u8> {
        self.with(b"d/", &[machine.as_bytes(), format!("{due:020}").as_bytes(), id.as_bytes()])
    }

    /// Every due-time entry of one machine: `{prefix}d/{machine}\0`.
    pub(super) fn due_of(&self, machine: &str) -> Vec<u8> {
        let mut key = self.with(b"d/", &[machine.as_bytes()]);
        key.push(SEP);
        key
    }

    /// Due time and id of a due-time key under `machine`, `None` if it is not one.
    pub(super) fn parse_due<'k>(&self, machine: &str, key: &'k [u8]) -> Option<(u64, &'k str)> {
        let rest = key.strip_prefix(self.due_of(machine).as_slice())?;
        let (due, id) = (rest.get(..20)?, rest.get(21..)?);
        if rest.get(20) != Some(&SEP) {
            return None;
        }
        Some((std::str::from_utf8(due).ok()?.parse().ok()?, std::str::from_utf8(id).ok()?))
    }

    /// `{prefix}p/{name}`: a processor's checkpoint and lease, its etcd
    /// key version the checkpoint's version.
    pub(super) fn checkpoint(&self, name: &str) -> Vec<u8> {
        self.with(b"p/", &[name.as_bytes()])
    }

    /// `{prefix}x/{processor}\0{tx:020}\0{seq:020}`: a dead letter; the
    /// zero-padded cursor makes key order feed order.
    pub(super) fn dead_letter(&self, processor: &str, tx: u64, seq: u64) -> Vec<u8> {
        self.with(b"x/", &[processor.as_bytes(), format!("{tx:020}").as_bytes(), format!("{seq:020}").as_bytes()])
    }

    /// Every dead letter of one processor: `{prefix}x/{processor}\0`.
    pub(super) fn dead_letters_of(&self, processor: &str) -> Vec<u8> {
        let mut key = self.with(b"x/", &[processor.as_bytes()]);
        key.push(SEP);
        key
    }

    /// `{prefix}head`: written by every commit that writes, so its
    /// `mod_revision` is the revision of the store's latest change.
    pub(super) fn head(&self) -> Vec<u8> {
        self.with(b"head", &[])
    }

    /// Machine, id and version of a history key, `None` if it is not one
    /// (not UTF-8 names, a version that is not a number).
    pub(super) fn parse_history<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str, u64)> {
        let rest = key.strip_prefix(self.prefix.as_slice())?.strip_prefix(b"h/".as_slice())?;
        let mut parts = rest.splitn(3, |b| *b == SEP);
        let machine = std::str::from_utf8(parts.next()?).ok()?;
        let id = std::str::from_utf8(parts.next()?).ok()?;
        let version = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        Some((machine, id, version))
    }
}

impl Keys {
    /// Machine and id of a removal entry's key ([`Keys::removal`]), `None`
    /// if it is not one. The revision is the key's last 20 bytes, so an id
    /// holding `\x01` itself still splits back.
    pub(super) fn parse_removal<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str)> {
        let rest = key.strip_prefix(self.prefix.as_slice())?.strip_prefix(b"h/".as_slice())?;
        let at = rest.iter().position(|b| *b == SEP)?;
        let (machine, rest) = (&rest[..at], &rest[at + 1..]);
        let (id, revision) = rest.split_at_checked(rest.len().checked_sub(21)?)?;
        let (&marker, digits) = revision.split_first()?;
        if marker != REMOVAL || rest.contains(&SEP) || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some((std::str::from_utf8(machine).ok()?, std::str::from_utf8(id).ok()?))
    }
}

/// Ends a removal entry's id in its key (see [`Keys::removal`]).
const REMOVAL: u8 = 1;

/// The end of the range of every key starting with `prefix` (etcd's
/// `range_end`): the prefix with its last byte below 0xff incremented.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key after it, as etcd spells it.
    vec![0]
}

/// The highest version stored: the SQL stores' limit, so every store
/// refuses the same write.
pub(super) const MAX_VERSION: u64 = i64::MAX as u64;

/// A record's value: a JSON header line, then the state's JSON verbatim.
/// Values from before schema versions were stored have no `schema` and
/// read as 1.
/// With the state's due time (`State::due`), when it has one: a `due`
/// field, absent otherwise.
pub(super) fn record_value(
    version: u64,
    kind: &str,
    updated_at: u64,
    schema: u32,
    state: &str,
    due: Option<u64>,
) -> Vec<u8> {
    let mut header =
        serde_json::json!({ "version": version, "kind": kind, "updated_at": updated_at, "schema": schema });
    if let (Some(due), Value::Object(fields)) = (due, &mut header) {
        fields.insert("due".to_owned(), due.into());
    }
    framed(&header, state)
}

/// A history entry's value: a JSON header line (version, command, origin,
/// kind, time, position in its transaction), then the state written.
pub(super) struct EntryHeader<'a> {
    pub(super) version: u64,
    pub(super) command: &'a str,
    pub(super) origin: Origin,
    pub(super) kind: &'a str,
    pub(super) at: u64,
    pub(super) position: u64,
    pub(super) schema: u32,
}

pub(super) fn entry_value(entry: &EntryHeader<'_>, state: &str) -> Vec<u8> {
    let header = serde_json::json!({
        "version": entry.version,
        "command": entry.command,
        "origin": entry.origin.as_str(),
        "kind": entry.kind,
        "at": entry.at,
        "pos": entry.position,
        "schema": entry.schema,
    });
    framed(&header, state)
}

/// An idempotency key's value: a JSON header line (the fingerprint as
/// decimal text, as it may exceed JSON's safe integers, version, kind, times),
/// then the state it names, if any.
pub(super) fn key_value(key: &Remember<'_>) -> Vec<u8> {
    let mut header = serde_json::json!({
        "fingerprint": key.fingerprint.to_string(),
        "version": key.version,
        "at": key.at,
        "expires_at": key.expires_at,
    });
    match (key.kind, &key.state) {
        (Some(kind), Some(state)) => {
            header["kind"] = Value::from(kind);
            framed(&header, state)
        }
        _ => header.to_string().into_bytes(),
    }
}

/// A stored idempotency key of record `(machine, id)`.
pub(super) fn remembered(machine: &str, id: &str, value: &[u8]) -> Result<Remembered, StoreError> {
    let fields = Fields::parse(machine, id, None, value)?;
    let text = fields.text("fingerprint")?;
    let fingerprint =
        text.parse().map_err(|_| fields.corrupt(&format!("stored fingerprint {text:?} is not a number")))?;
    let (kind, state) = match fields.header.get("kind") {
        None => (None, None),
        Some(_) => (Some(Arc::from(fields.text("kind")?)), Some(Arc::from(fields.state()?))),
    };
    Ok(Remembered {
        fingerprint,
        version: fields.version()?,
        kind,
        state,
        at: fields.unsigned("at")?,
        expires_at: fields.unsigned("expires_at")?,
    })
}

fn framed(header: &Value, state: &str) -> Vec<u8> {
    // Compact JSON never holds a raw newline, so the first one ends the header.
    let mut value = header.to_string().into_bytes();
    value.push(b'\n');
    value.extend_from_slice(state.as_bytes());
    value
}

/// Reads a stored value's header fields, naming its record in every error.
pub(super) struct Fields<'a> {
    machine: &'a str,
    id: &'a str,
    entry: Option<Cursor>,
    header: Map<String, Value>,
    state: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    pub(super) fn parse(
        machine: &'a str,
        id: &'a str,
        entry: Option<Cursor>,
        value: &'a [u8],
    ) -> Result<Self, StoreError> {
        let (header, state) = match value.iter().position(|b| *b == b'\n') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        };
        let mut fields = Self { machine, id, entry, header: Map::new(), state };
        match serde_json::from_slice::<Value>(header) {
            Ok(Value::Object(map)) => fields.header = map,
            _ => return Err(fields.corrupt("stored header is not a JSON object")),
        }
        Ok(fields)
    }

    pub(super) fn corrupt(&self, reason: &str) -> StoreError {
        let reason = match self.entry {
            Some(cursor) => format!("history entry {cursor}: {reason}"),
            None => reason.to_owned(),
        };
        StoreError::Corrupt { machine: self.machine.to_owned(), id: self.id.to_owned(), reason }
    }

    fn field(&self, name: &str) -> Result<&Value, StoreError> {
        match self.header.get(name) {
            None => Err(self.corrupt(&format!("stored {name} is missing"))),
            Some(Value::Null) => Err(self.corrupt(&format!("stored {name} is NULL"))),
            Some(value) => Ok(value),
        }
    }

    fn integer(&self, name: &str) -> Result<i64, StoreError> {
        match self.field(name)? {
            Value::Number(n) => n.as_i64().ok_or_else(|| self.corrupt(&format!("stored {name} {n} is not an integer"))),
            other => Err(self.corrupt(&format!("stored {name} is {}, not an integer", type_name(other)))),
        }
    }

    /// A version: an integer of at least 1.
    pub(super) fn version(&self) -> Result<u64, StoreError> {
        let value = self.integer("version")?;
        u64::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
            self.corrupt(&format!("stored version {value} is not a valid version (versions start at 1)"))
        })
    }

    /// A time or position: a non-negative integer.
    pub(super) fn unsigned(&self, name: &str) -> Result<u64, StoreError> {
        let value = self.integer(name)?;
        u64::try_from(value).map_err(|_| self.corrupt(&format!("stored {name} {value} is negative")))
    }

    /// The schema version: 1 to `u32::MAX`, and 1 when the value predates
    /// stored schema versions (no `schema` field).
    pub(super) fn schema(&self) -> Result<u32, StoreError> {
        if !self.header.contains_key("schema") {
            return Ok(1);
        }
        let value = self.integer("schema")?;
        u32::try_from(value).ok().filter(|schema| *schema > 0).ok_or_else(|| {
            self.corrupt(&format!("stored schema {value} is not a valid schema version (1 to {})", u32::MAX))
        })
    }

    pub(super) fn text(&self, name: &str) -> Result<&str, StoreError> {
        match self.field(name)? {
            Value::String(text) => Ok(text),
            other => Err(self.corrupt(&format!("stored {name} is {}, not text", type_name(other)))),
        }
    }

    /// The state after the header: present and UTF-8.
    pub(super) fn state(&self) -> Result<&'a str, StoreError> {
        let bytes = self.state.ok_or_else(|| self.corrupt("stored state is missing (no line after the header)"))?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("stored state is not text: invalid utf-8"))
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A stored record of `(machine, id)`.
pub(super) fn record(machine: &str, id: &str, value: &[u8]) -> Result<Record, StoreError> {
    stored(machine, id, value).map(|(record, _)| record)
}

/// The record and the due time its value holds (`None`: no `due` field),
/// from one parse of the value.
pub(super) fn stored(machine: &str, id: &str, value: &[u8]) -> Result<(Record, Option<u64>), StoreError> {
    let fields = Fields::parse(machine, id, None, value)?;
    let record = Record {
        version: fields.version()?,
        kind: Arc::from(fields.text("kind")?),
        state: Arc::from(fields.state()?),
        updated_at: fields.unsigned("updated_at")?,
        schema: fields.schema()?,
    };
    let due = if fields.header.contains_key("due") { Some(fields.unsigned("due")?) } else { None };
    Ok((record, due))
}

/// A history entry from its key and value, `revision` being the revision
/// of the transaction that wrote it. `kind_before` and `before` are left
/// empty: they are the previous entry's.
pub(super) fn change(keys: &Keys, key: &[u8], value: &[u8], revision: i64) -> Result<Change, StoreError> {
    let (machine, id, key_version) = match keys.parse_history(key) {
        Some((machine, id, version)) => (machine, id, Some(version)),
        None => match keys.parse_removal(key) {
            Some((machine, id)) => (machine, id, None),
            None => {
                return Err(StoreError::Corrupt {
                    machine: UNREADABLE.to_owned(),
                    id: UNREADABLE.to_owned(),
                    reason: format!("history key {:?} is not one this store writes", String::from_utf8_lossy(key)),
                });
            }
        },
    };
    let tx = u64::try_from(revision).unwrap_or(0);
    let fields = Fields::parse(machine, id, Some(Cursor { tx, seq: 0 }), value)?;
    let position = fields.unsigned("pos")?;
    let cursor = Cursor { tx, seq: position };
    let fields = Fields { entry: Some(cursor), ..fields };
    let version = fields.version()?;
    if let Some(key_version) = key_version
        && version != key_version
    {
        return Err(fields.corrupt(&format!("stored version {version} is not its key's version {key_version}")));
    }
    let origin = fields.text("origin")?;
    let origin = Origin::parse(origin).ok_or_else(|| {
        fields.corrupt(&format!("stored origin {origin:?} is not one this version knows ({})", Origin::known()))
    })?;
    // Removal entries, and only they, live under removal keys.
    if key_version.is_none() != (origin == Origin::Removal) {
        return Err(fields.corrupt(&format!(
            "an entry of origin {origin} under a {} key",
            match key_version {
                Some(_) => "history",
                None => "removal",
            }
        )));
    }
    Ok(Change {
        cursor,
        machine: Arc::from(machine),
        id: Arc::from(id),
        version,
        command: Arc::from(fields.text("command")?),
        origin,
        kind_before: None,
        before: None,
        kind: Arc::from(fields.text("kind")?),
        after: Arc::from(fields.state()?),
        at: fields.unsigned("at")?,
        schema: fields.schema()?,
        schema_before: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_keys_split_back_and_stay_out_of_the_record_s_history() {
        let keys = Keys::new("app/");
        for id in ["a", "a\u{1}00000000000000000007", "ключ"] {
            let key = keys.removal("Order", id, 42);
            assert_eq!(keys.parse_removal(&key), Some(("Order", id)), "{id:?}");
            assert_eq!(keys.parse_history(&key), None);
            assert!(!key.starts_with(&keys.history_of("Order", id)));
            assert!(key.as_slice() >= prefix_end(&keys.history_of("Order", id)).as_slice(), "outside the range");
            assert!(key.starts_with(&keys.all_history()));
        }
        assert_eq!(keys.parse_removal(&keys.history("Order", "a", 3)), None);
        assert_eq!(keys.parse_removal(b"app/h/Order\0a\x010000000000000000004x"), None);
    }

    #[test]
    fn keys_split_back_into_their_parts() {
        let keys = Keys::new("app/");
        let key = keys.history("Order", "a\nb", 42);
        assert_eq!(keys.parse_history(&key), Some(("Order", "a\nb", 42)));
        assert!(key.starts_with(&keys.history_of("Order", "a\nb")));
        assert!(!keys.history("Order", "a\nbc", 1).starts_with(&keys.history_of("Order", "a\nb")));
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }

    #[test]
    fn values_round_trip_and_bad_ones_are_named() {
        let value = record_value(3, "Open", 7, 2, "{\"n\":\n1}", None);
        let read = record("M", "i", &value).unwrap();
        assert_eq!(
            (read.version, &*read.kind, &*read.state, read.updated_at, read.schema),
            (3, "Open", "{\"n\":\n1}", 7, 2)
        );
        let older = record("M", "i", b"{\"version\":1,\"kind\":\"K\",\"updated_at\":0}\n1").unwrap();
        assert_eq!(older.schema, 1, "a value without a schema predates them");
        for (value, reason) in [
            (&b"{\"version\":0,\"kind\":\"K\",\"updated_at\":0}\n1"[..], "stored version 0 is not a valid version"),
            (b"{\"version\":1.5,\"kind\":\"K\",\"updated_at\":0}\n1", "stored version 1.5 is not an integer"),
            (b"{\"version\":\"one\",\"kind\":\"K\",\"updated_at\":0}\n1", "stored version is text, not an integer"),
            (b"{\"version\":1,\"kind\":\"K\",\"updated_at\":-1}\n1", "stored updated_at -1 is negative"),
            (b"{\"version\":1,\"kind\":\"K\",\"updated_at\":0}", "stored state is missing"),
            (b"{\"version\":1,\"kind\":\"K\",\"updated_at\":0}\n\xff", "stored state is not text"),
            (b"[]\n1", "stored header is not a JSON object"),
            (b"{\"version\":1,\"kind\":\"K\",\"updated_at\":0,\"schema\":0}\n1", "stored schema 0 is not a valid"),
            (b"{\"version\":1,\"kind\":\"K\",\"updated_at\":0,\"schema\":\"2\"}\n1", "stored schema is text"),
        ] {
            match record("M", "i", value) {
                Err(StoreError::Corrupt { machine, id, reason: got }) => {
                    assert_eq!((machine.as_str(), id.as_str()), ("M", "i"));
                    assert!(got.starts_with(reason), "{got}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
