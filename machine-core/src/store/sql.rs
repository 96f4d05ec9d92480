//! What the SQL stores share: reading rows back (where data another program
//! left is caught and named), version and time conversions, and turning
//! driver errors into typed, classified store errors.

use super::record::{Change, Cursor, Listed, Origin, Record, Timer};
use super::timeout::{Timeout, Wait};
use super::{Checkpoint, DeadLetter};
use super::{Remember, Remembered};
use crate::error::{StoreError, VersionConflict};
use sqlx::{Decode, Row, Type, TypeInfo, ValueRef};
use std::sync::Arc;

/// Reads the columns of one stored row of record `(machine, id)`.
///
/// Anything this store would never have written (a NULL, a value of the
/// wrong type, which SQLite's type affinity lets other programs store, text
/// that is not UTF-8, a version below 1) is [`StoreError::Corrupt`] naming
/// the record; driver failures stay [`StoreError::Backend`]. A good row costs
/// what plain `try_get` calls cost: the cause is only looked into on failure.
pub(crate) struct Fields<'a, R> {
    row: &'a R,
    machine: &'a str,
    id: &'a str,
    /// For history rows: where the entry is in the feed, so it can be found.
    entry: Option<Cursor>,
    error: fn(sqlx::Error) -> StoreError,
}

/// Stands in for a machine name or id that cannot be read as text itself;
/// the reason says which column it is.
const UNREADABLE: &str = "(unreadable)";

impl<'a, R: Row> Fields<'a, R>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    /// The fields of `row`, which belongs to record `(machine, id)`.
    pub(crate) fn new(row: &'a R, machine: &'a str, id: &'a str, error: fn(sqlx::Error) -> StoreError) -> Self {
        Self { row, machine, id, entry: None, error }
    }

    /// A `StoreError::Corrupt` naming this row's record.
    fn corrupt(&self, reason: &str) -> StoreError {
        let reason = match self.entry {
            Some(cursor) => format!("history entry {cursor}: {reason}"),
            None => reason.to_owned(),
        };
        StoreError::Corrupt { machine: self.machine.to_owned(), id: self.id.to_owned(), reason }
    }

    /// Why `column` failed to decode as `T` (`expected` in words), looked into
    /// only once it did: NULL, another storage class, or bytes that are not
    /// valid for the type.
    fn refused<T: Type<R::Database>>(&self, column: &str, expected: &str, error: sqlx::Error) -> StoreError {
        let sqlx::Error::ColumnDecode { source, .. } = &error else { return (self.error)(error) };
        let reason = match self.row.try_get_raw(column) {
            Ok(value) if value.is_null() => format!("stored {column} is NULL"),
            Ok(value) if !T::compatible(&value.type_info()) => {
                format!("stored {column} is {}, not {expected}", value.type_info().name())
            }
            _ => format!("stored {column} is not {expected}: {source}"),
        };
        self.corrupt(&reason)
    }

    fn optional_text(&self, column: &str) -> Result<Option<&'a str>, StoreError> {
        self.row.try_get::<Option<&str>, _>(column).map_err(|e| self.refused::<&str>(column, "text", e))
    }

    pub(crate) fn text(&self, column: &str) -> Result<&'a str, StoreError> {
        self.optional_text(column)?.ok_or_else(|| self.corrupt(&format!("stored {column} is NULL")))
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        match self.row.try_get::<Option<i64>, _>(column) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(self.corrupt(&format!("stored {column} is NULL"))),
            Err(error) => Err(self.refused::<i64>(column, "an integer", error)),
        }
    }

    /// A version column: an integer of at least 1.
    pub(crate) fn version(&self, column: &str) -> Result<u64, StoreError> {
        let value = self.integer(column)?;
        u64::try_from(value).ok().filter(|&version| version > 0).ok_or_else(|| self.corrupt(&invalid_version(value)))
    }

    /// A schema version column: an integer from 1 to `u32::MAX`.
    pub(crate) fn schema(&self, column: &str) -> Result<u32, StoreError> {
        let value = self.integer(column)?;
        schema_of(value).ok_or_else(|| self.corrupt(&invalid_schema(column, value)))
    }

    /// An optional schema version column (NULL: none).
    fn optional_schema(&self, column: &str) -> Result<Option<u32>, StoreError> {
        match self.row.try_get::<Option<i64>, _>(column) {
            Ok(None) => Ok(None),
            Ok(Some(value)) => schema_of(value).map(Some).ok_or_else(|| self.corrupt(&invalid_schema(column, value))),
            Err(error) => Err(self.refused::<i64>(column, "an integer", error)),
        }
    }

    /// A sequence number or time: a non-negative integer.
    pub(crate) fn unsigned(&self, column: &str) -> Result<u64, StoreError> {
        let value = self.integer(column)?;
        u64::try_from(value).map_err(|_| self.corrupt(&format!("stored {column} {value} is negative")))
    }

    /// The stored record: columns `version`, `kind`, `state`, `updated_at`.
    pub(crate) fn record(&self) -> Result<Record, StoreError> {
        Ok(Record {
            version: self.version("version")?,
            kind: Arc::from(self.text("kind")?),
            state: Arc::from(self.text("state")?),
            updated_at: self.unsigned("updated_at")?,
            schema: self.schema("schema_version")?,
        })
    }
}

/// An idempotency key from a row with columns `fingerprint`, `version`,
/// `kind`, `state` (both NULL for a key that names no state), `at` and
/// `expires_at`, of record `(machine, id)`.
pub(crate) fn remembered<R: Row>(
    row: &R,
    machine: &str,
    id: &str,
    error: fn(sqlx::Error) -> StoreError,
) -> Result<Remembered, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let fields = Fields::new(row, machine, id, error);
    Ok(Remembered {
        fingerprint: u64::from_ne_bytes(fields.integer("fingerprint")?.to_ne_bytes()),
        version: fields.version("version")?,
        kind: fields.optional_text("kind")?.map(Arc::from),
        state: fields.optional_text("state")?.map(Arc::from),
        at: fields.unsigned("at")?,
        expires_at: fields.unsigned("expires_at")?,
    })
}

/// What a corrupt checkpoint row is named by in [`StoreError::Corrupt`]
/// (with the processor's name as its id): the table it is stored in.
pub(crate) const PROCESSORS: &str = "machine_processors";

/// A processor's checkpoint from a row with columns `cursor_tx`,
/// `cursor_seq`, `owner`, `lease_until` and `version`.
pub(crate) fn checkpoint<R: Row>(
    row: &R,
    name: &str,
    error: fn(sqlx::Error) -> StoreError,
) -> Result<Checkpoint, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let fields = Fields::new(row, PROCESSORS, name, error);
    Ok(Checkpoint {
        cursor: Cursor { tx: fields.unsigned("cursor_tx")?, seq: fields.unsigned("cursor_seq")? },
        owner: fields.text("owner")?.to_owned(),
        lease_until: fields.unsigned("lease_until")?,
        version: fields.version("version")?,
    })
}

/// A dead letter of `processor` from a row with columns `cursor_tx`,
/// `cursor_seq`, `machine`, `id`, `version`, `error`, `attempts` and
/// `parked_at`; a corrupt one is named by its record and cursor.
pub(crate) fn dead_letter<R: Row>(
    row: &R,
    processor: &str,
    error: fn(sqlx::Error) -> StoreError,
) -> Result<DeadLetter, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let mut fields = Fields::new(row, UNREADABLE, UNREADABLE, error);
    let machine = fields.text("machine")?;
    fields.machine = machine;
    let id = fields.text("id")?;
    fields.id = id;
    let cursor = Cursor { tx: fields.unsigned("cursor_tx")?, seq: fields.unsigned("cursor_seq")? };
    fields.entry = Some(cursor);
    let attempts = fields.integer("attempts")?;
    let attempts =
        u32::try_from(attempts).map_err(|_| fields.corrupt(&format!("stored attempts {attempts} is out of range")))?;
    Ok(DeadLetter {
        processor: processor.to_owned(),
        cursor,
        machine: machine.to_owned(),
        id: id.to_owned(),
        version: fields.version("version")?,
        error: fields.text("error")?.to_owned(),
        attempts,
        parked_at: fields.unsigned("parked_at")?,
    })
}

/// A cursor's two parts as the database's signed 64-bit integers.
pub(crate) fn cursor_to_db(cursor: Cursor) -> Result<(i64, i64), StoreError> {
    match (i64::try_from(cursor.tx), i64::try_from(cursor.seq)) {
        (Ok(tx), Ok(seq)) => Ok((tx, seq)),
        _ => Err(out_of_range(format!("cursor {cursor} is out of range"))),
    }
}

/// A fingerprint in a signed 64-bit column, bit for bit.
pub(crate) fn fingerprint_to_db(fingerprint: u64) -> i64 {
    i64::from_ne_bytes(fingerprint.to_ne_bytes())
}

/// A time in milliseconds in a signed 64-bit column (saturating).
pub(crate) fn millis_to_db(millis: u64) -> i64 {
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// The conflict of a commit whose idempotency key another commit stored
/// first: the record moved on under that key.
pub(crate) fn key_taken(key: &Remember<'_>) -> StoreError {
    VersionConflict::new(key.machine, key.id, key.version, key.version).into()
}

/// A stored schema version, if it is one (1 to `u32::MAX`).
fn schema_of(value: i64) -> Option<u32> {
    u32::try_from(value).ok().filter(|&schema| schema > 0)
}

/// The reason for a stored schema version that is not one.
fn invalid_schema(column: &str, value: i64) -> String {
    format!("stored {column} {value} is not a valid schema version (1 to {})", u32::MAX)
}

/// The reason for a stored version below 1.
fn invalid_version(version: i64) -> String {
    format!("stored version {version} is not a valid version (versions start at 1)")
}

/// A record from a row with columns `version`, `kind`, `state`, `updated_at`,
/// `schema_version` of record `(machine, id)`.
pub(crate) fn record<R: Row>(
    row: &R,
    machine: &str,
    id: &str,
    error: fn(sqlx::Error) -> StoreError,
) -> Result<Record, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    Fields::new(row, machine, id, error).record()
}

/// One row of a due-time query: columns `id`, `version` and `due_at`.
pub(crate) fn timer<R: Row>(row: &R, machine: &str, error: fn(sqlx::Error) -> StoreError) -> Result<Timer, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let id = Fields::new(row, machine, UNREADABLE, error).text("id")?;
    let fields = Fields::new(row, machine, id, error);
    Ok(Timer { id: id.to_owned(), version: fields.version("version")?, due: fields.unsigned("due_at")? })
}

/// A record of a kind query: columns `id` and those of [`record`].
pub(crate) fn listed<R: Row>(row: &R, machine: &str, error: fn(sqlx::Error) -> StoreError) -> Result<Listed, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let id = Fields::new(row, machine, UNREADABLE, error).text("id")?;
    Ok(Listed { id: id.to_owned(), record: record(row, machine, id, error)? })
}

/// A history entry from a row with columns `seq`, `machine`, `id`, `version`,
/// `command`, `origin`, `kind`, `state`, `at`, `schema_version`,
/// `kind_before`, `state_before`, `schema_before`, and, where commits run in parallel (PostgreSQL), `tx`: the committing
/// transaction's order as text (0 where there is no such column).
pub(crate) fn change<R: Row>(
    row: &R,
    tx_column: Option<&str>,
    error: fn(sqlx::Error) -> StoreError,
) -> Result<Change, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    // The record's name first, so every later error can carry it; a name
    // that is not text is itself the corruption reported.
    let mut fields = Fields::new(row, UNREADABLE, UNREADABLE, error);
    let machine = fields.text("machine")?;
    fields.machine = machine;
    let id = fields.text("id")?;
    fields.id = id;
    let tx = match tx_column {
        Some(column) => {
            let text = fields.text(column)?;
            text.parse().map_err(|_| fields.corrupt(&format!("stored transaction id {text:?} is not a number")))?
        }
        None => 0,
    };
    let cursor = Cursor { tx, seq: fields.unsigned("seq")? };
    fields.entry = Some(cursor);
    let origin = fields.text("origin")?;
    let origin = Origin::parse(origin).ok_or_else(|| {
        fields.corrupt(&format!("stored origin {origin:?} is not one this version knows ({})", Origin::known()))
    })?;
    Ok(Change {
        cursor,
        machine: Arc::from(machine),
        id: Arc::from(id),
        version: fields.version("version")?,
        command: Arc::from(fields.text("command")?),
        origin,
        kind_before: fields.optional_text("kind_before")?.map(Arc::from),
        before: fields.optional_text("state_before")?.map(Arc::from),
        kind: Arc::from(fields.text("kind")?),
        after: Arc::from(fields.text("state")?),
        at: fields.unsigned("at")?,
        schema: fields.schema("schema_version")?,
        schema_before: fields.optional_schema("schema_before")?,
    })
}

/// A version as the database's signed 64-bit integer; versions past
/// `i64::MAX` cannot be stored.
pub(crate) fn version_to_db(machine: &str, id: &str, version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| overflow(machine, id, version.saturating_sub(1)))
}

/// The version after `expected`, refused when the database cannot hold it.
pub(crate) fn next_version(machine: &str, id: &str, expected: u64) -> Result<i64, StoreError> {
    match expected.checked_add(1) {
        Some(next) => i64::try_from(next).map_err(|_| overflow(machine, id, expected)),
        None => Err(overflow(machine, id, expected)),
    }
}

fn overflow(machine: &str, id: &str, version: u64) -> StoreError {
    StoreError::VersionOverflow { machine: machine.to_owned(), id: id.to_owned(), version }
}

/// A stored version of record `(machine, id)`; below 1 it can only have been
/// written by something other than this store.
#[cfg(feature = "postgres")]
pub(crate) fn version_from_db(machine: &str, id: &str, version: i64) -> Result<u64, StoreError> {
    match u64::try_from(version) {
        Ok(version) if version > 0 => Ok(version),
        _ => Err(StoreError::Corrupt {
            machine: machine.to_owned(),
            id: id.to_owned(),
            reason: invalid_version(version),
        }),
    }
}

/// Now, in milliseconds since the Unix epoch, as SQLite's schema keeps times.
#[cfg(feature = "sqlite")]
pub(crate) fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A request the database cannot express (a cursor past `i64::MAX`).
pub(crate) fn out_of_range(message: String) -> StoreError {
    StoreError::backend(message, false)
}

/// Wraps a driver error, marking the ones worth trying again: lost or
/// refused connections, pool timeouts, and the codes `retryable_code` lists
/// for the backend (busy or locked databases, server shutdowns). A bounded
/// wait that ran out (the pool's acquire timeout, and the codes
/// `timeout_code` names: a statement or lock timeout) becomes a retryable
/// [`Timeout`] with the driver's error as its source.
pub(crate) fn backend(
    error: sqlx::Error,
    retryable_code: fn(&str) -> bool,
    timeout_code: fn(&str) -> Option<Wait>,
) -> StoreError {
    let wait = match &error {
        sqlx::Error::PoolTimedOut => Some(Wait::Acquire),
        sqlx::Error::Database(db) => db.code().and_then(|code| timeout_code(&code)),
        _ => None,
    };
    if let Some(wait) = wait {
        return Timeout::new(wait, None, Some(Arc::new(error))).into();
    }
    let retryable = match &error {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| retryable_code(&code)),
        _ => false,
    };
    StoreError::Backend { source: Arc::new(error), retryable }
}

/// An error of `pool.acquire()`: a pool timeout names the pool's bound.
pub(crate) fn acquire_error<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    error: sqlx::Error,
    other: fn(sqlx::Error) -> StoreError,
) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut => {
            Timeout::new(Wait::Acquire, Some(pool.options().get_acquire_timeout()), Some(Arc::new(error))).into()
        }
        error => other(error),
    }
}

/// A connect that did not finish within `limit`.
#[cfg(feature = "postgres")]
pub(crate) fn connect_timeout(limit: std::time::Duration) -> StoreError {
    Timeout::new(Wait::Connect, Some(limit), None).into()
}

/// Whether `name` may be used as an SQL identifier unquoted: lowercase ASCII
/// letters, digits and `_`, not starting with a digit, at most 48 bytes (so
/// derived index names stay under PostgreSQL's 63-byte limit).
#[cfg(feature = "postgres")]
pub(crate) fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        for good in ["machine", "app_1", "_x"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "1abc", "Machine", "a-b", "a;drop", "a b", "\"x\"", &"a".repeat(49)] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn versions_beyond_i64_are_typed_errors() {
        assert_eq!(next_version("m", "i", 0).unwrap(), 1);
        let max = u64::try_from(i64::MAX).unwrap();
        assert!(
            matches!(next_version("m", "i", max), Err(StoreError::VersionOverflow { version, .. }) if version == max)
        );
        assert!(matches!(next_version("m", "i", u64::MAX), Err(StoreError::VersionOverflow { .. })));
        assert!(version_to_db("m", "i", max + 1).is_err());
        for invalid in [0, -1, i64::MIN] {
            let error = version_from_db("m", "i", invalid).unwrap_err();
            assert!(
                matches!(&error, StoreError::Corrupt { machine, id, .. } if machine == "m" && id == "i"),
                "{error:?}"
            );
            assert!(error.to_string().contains(&format!("stored version {invalid} is not a valid version")), "{error}");
        }
        assert_eq!(version_from_db("m", "i", 1).unwrap(), 1);
    }

    #[cfg(feature = "sqlite")]
    mod rows {
        use super::super::*;
        use sqlx::AssertSqlSafe;
        use sqlx::sqlite::{SqlitePool, SqliteRow};

        fn driver(error: sqlx::Error) -> StoreError {
            backend(error, |_| false, |_| None)
        }

        async fn row(pool: &SqlitePool, columns: &str) -> SqliteRow {
            sqlx::query(AssertSqlSafe(format!("SELECT {columns}"))).fetch_one(pool).await.unwrap()
        }

        fn reason(result: Result<impl std::fmt::Debug, StoreError>, machine: &str, id: &str) -> String {
            match result {
                Err(StoreError::Corrupt { machine: m, id: i, reason }) if m == machine && i == id => reason,
                other => panic!("not a Corrupt error naming {machine} {id:?}: {other:?}"),
            }
        }

        #[tokio::test]
        async fn every_value_a_store_never_writes_is_named_with_its_record() {
            let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
            let cases = [
                ("NULL, 'K', '1', 0, 1", "stored version is NULL"),
                ("0, 'K', '1', 0, 1", "stored version 0 is not a valid version (versions start at 1)"),
                ("-1, 'K', '1', 0, 1", "stored version -1 is not a valid version (versions start at 1)"),
                ("1.5, 'K', '1', 0, 1", "stored version is REAL, not an integer"),
                ("'1', 'K', '1', 0, 1", "stored version is TEXT, not an integer"),
                ("X'01', 'K', '1', 0, 1", "stored version is BLOB, not an integer"),
                ("1, NULL, '1', 0, 1", "stored kind is NULL"),
                ("1, X'4b', '1', 0, 1", "stored kind is BLOB, not text"),
                ("1, 'K', 7, 0, 1", "stored state is INTEGER, not text"),
                ("1, 'K', CAST(X'fffe' AS TEXT), 0, 1", "stored state is not text: invalid utf-8"),
                ("1, 'K', '1', 0.5, 1", "stored updated_at is REAL, not an integer"),
                ("1, 'K', '1', -5, 1", "stored updated_at -5 is negative"),
                ("1, 'K', '1', 0, 0", "stored schema_version 0 is not a valid schema version"),
                ("1, 'K', '1', 0, 4294967296", "stored schema_version 4294967296 is not a valid schema version"),
                ("1, 'K', '1', 0, NULL", "stored schema_version is NULL"),
            ];
            for (values, expected) in cases {
                let named =
                    row_with(&pool, values, &["version", "kind", "state", "updated_at", "schema_version"]).await;
                let reason = reason(record(&named, "Order", "order-42", driver), "Order", "order-42");
                assert!(reason.starts_with(expected), "{values}: {reason}");
            }
            let good = row_with(
                &pool,
                "3, 'K', '{}', 1700000000000, 2",
                &["version", "kind", "state", "updated_at", "schema_version"],
            )
            .await;
            let record = record(&good, "Order", "order-42", driver).unwrap();
            assert_eq!(
                (record.version, &*record.kind, &*record.state, record.updated_at, record.schema),
                (3, "K", "{}", 1_700_000_000_000, 2)
            );
        }

        /// A one-row result of `values` under the names `columns`.
        async fn row_with(pool: &SqlitePool, values: &str, columns: &[&str]) -> SqliteRow {
            let select: Vec<String> = values.split(", ").zip(columns).map(|(v, c)| format!("{v} AS {c}")).collect();
            row(pool, &select.join(", ")).await
        }

        #[tokio::test]
        async fn history_entries_name_their_record_and_cursor() {
            let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
            let columns = [
                "seq",
                "machine",
                "id",
                "version",
                "command",
                "origin",
                "kind",
                "state",
                "at",
                "kind_before",
                "state_before",
                "schema_version",
                "schema_before",
            ];
            let good =
                row_with(&pool, "7, 'M', 'i', 2, 'null', 'recovery', 'K', '2', 5, 'K', '1', 2, 1", &columns).await;
            let entry = change(&good, None, driver).unwrap();
            assert_eq!(
                (entry.cursor, entry.origin, entry.before.as_deref(), entry.schema, entry.schema_before),
                (Cursor { tx: 0, seq: 7 }, Origin::Recovery, Some("1"), 2, Some(1))
            );
            let cases = [
                (
                    "7, 'M', 'i', 2, 'null', 'replayed', 'K', '2', 5, NULL, NULL, 1, NULL",
                    "M",
                    "i",
                    "history entry 0:7: stored origin \"replayed\" is not one this version knows",
                ),
                (
                    "7, 'M', 'i', 0, 'null', 'command', 'K', '2', 5, NULL, NULL, 1, NULL",
                    "M",
                    "i",
                    "history entry 0:7: stored version 0 is not a valid version",
                ),
                (
                    "7, 'M', 'i', 2, X'00', 'command', 'K', '2', 5, NULL, NULL, 1, NULL",
                    "M",
                    "i",
                    "history entry 0:7: stored command is BLOB, not text",
                ),
                (
                    "-7, 'M', 'i', 2, 'null', 'command', 'K', '2', 5, NULL, NULL, 1, NULL",
                    "M",
                    "i",
                    "stored seq -7 is negative",
                ),
                (
                    "7, X'00', 'i', 2, 'null', 'command', 'K', '2', 5, NULL, NULL, 1, NULL",
                    UNREADABLE,
                    UNREADABLE,
                    "stored machine is BLOB, not text",
                ),
                (
                    "7, 'M', NULL, 2, 'null', 'command', 'K', '2', 5, NULL, NULL, 1, NULL",
                    "M",
                    UNREADABLE,
                    "stored id is NULL",
                ),
            ];
            for (values, machine, id, expected) in cases {
                let row = row_with(&pool, values, &columns).await;
                let reason = reason(change(&row, None, driver), machine, id);
                assert!(reason.starts_with(expected), "{values}: {reason}");
            }
        }
    }
}
