//! The etcd store's processor checkpoints and dead letters: a key per
//! checkpoint, compared and set on etcd's own key version, and a key per
//! dead letter in feed order.

use super::Etcd;
use super::error::{Sent, store_error};
use super::layout::prefix_end;
use crate::error::StoreError;
use crate::store::key::validate_processor;
use crate::store::{Checkpoint, Checkpoints, Cursor, DeadLetter};
use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use serde_json::{Value, json};

/// A stored value that is not one this store writes, named.
fn corrupt(name: &str, what: &str) -> StoreError {
    StoreError::Corrupt {
        machine: "processor".to_owned(),
        id: name.to_owned(),
        reason: format!("stored {what} is not one this store writes"),
    }
}

fn unsigned(value: &Value, field: &str) -> Option<u64> {
    value.get(field)?.as_u64()
}

fn checkpoint_of(name: &str, kv: &KeyValue) -> Result<Checkpoint, StoreError> {
    let value: Value = serde_json::from_slice(kv.value()).map_err(|_| corrupt(name, "checkpoint"))?;
    let read = || {
        Some(Checkpoint {
            cursor: Cursor { tx: unsigned(&value, "tx")?, seq: unsigned(&value, "seq")? },
            owner: value.get("owner")?.as_str()?.to_owned(),
            lease_until: unsigned(&value, "lease_until")?,
            version: u64::try_from(kv.version()).ok().filter(|version| *version > 0)?,
        })
    };
    read().ok_or_else(|| corrupt(name, "checkpoint"))
}

fn letter_of(processor: &str, kv: &KeyValue) -> Result<DeadLetter, StoreError> {
    let value: Value = serde_json::from_slice(kv.value()).map_err(|_| corrupt(processor, "dead letter"))?;
    let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
    let read = || {
        Some(DeadLetter {
            processor: processor.to_owned(),
            cursor: Cursor { tx: unsigned(&value, "tx")?, seq: unsigned(&value, "seq")? },
            machine: text("machine")?,
            id: text("id")?,
            version: unsigned(&value, "version")?,
            error: text("error")?,
            attempts: u32::try_from(unsigned(&value, "attempts")?).ok()?,
            parked_at: unsigned(&value, "parked_at")?,
        })
    };
    read().ok_or_else(|| corrupt(processor, "dead letter"))
}

/// A checkpoint's version is its key's etcd version (1 when created, one
/// more per put, 0 while absent), so a save compares exactly that: two
/// instances can never both win a lease.
impl Checkpoints for Etcd {
    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        validate_processor(name)?;
        let response = self.get(self.keys().checkpoint(name), None).await?;
        response.kvs().first().map(|kv| checkpoint_of(name, kv)).transpose()
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        expected_version: u64,
        cursor: Cursor,
        owner: &str,
        lease_until: u64,
    ) -> Result<bool, StoreError> {
        validate_processor(name)?;
        let expected = i64::try_from(expected_version).map_err(|_| StoreError::VersionOverflow {
            machine: "processor".to_owned(),
            id: name.to_owned(),
            version: expected_version,
        })?;
        let key = self.keys().checkpoint(name);
        let value = json!({ "tx": cursor.tx, "seq": cursor.seq, "owner": owner, "lease_until": lease_until });
        let value = value.to_string().into_bytes();
        let sent = Sent::Write { operations: 1, bytes: key.len() + value.len() + 16 };
        let txn = Txn::new()
            .when(vec![Compare::version(key.clone(), CompareOp::Equal, expected)])
            .and_then(vec![TxnOp::put(key, value, None)]);
        let done = self.kv().txn(txn).await.map_err(|e| store_error(e, sent))?;
        Ok(done.succeeded())
    }

    async fn park(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        validate_processor(&letter.processor)?;
        let key = self.keys().dead_letter(&letter.processor, letter.cursor.tx, letter.cursor.seq);
        let value = json!({
            "tx": letter.cursor.tx, "seq": letter.cursor.seq, "machine": letter.machine, "id": letter.id,
            "version": letter.version, "error": letter.error, "attempts": letter.attempts,
            "parked_at": letter.parked_at,
        });
        let value = value.to_string().into_bytes();
        let sent = Sent::Write { operations: 1, bytes: key.len() + value.len() + 16 };
        self.kv().put(key, value, None).await.map_err(|e| store_error(e, sent))?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        processor: &str,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        validate_processor(processor)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.keys().dead_letters_of(processor);
        let start = match after {
            // The smallest key past the cursor's.
            Some(after) => {
                let mut start = self.keys().dead_letter(processor, after.tx, after.seq);
                start.push(0);
                start
            }
            None => base.clone(),
        };
        let options = GetOptions::new().with_range(prefix_end(&base)).with_limit(i64::from(limit));
        let page = self.get(start, Some(options)).await?;
        page.kvs().iter().map(|kv| letter_of(processor, kv)).collect()
    }

    async fn unpark(&self, processor: &str, cursor: Cursor) -> Result<bool, StoreError> {
        validate_processor(processor)?;
        let key = self.keys().dead_letter(processor, cursor.tx, cursor.seq);
        let sent = Sent::Write { operations: 1, bytes: key.len() + 16 };
        let deleted = self.kv().delete(key, None).await.map_err(|e| store_error(e, sent))?;
        Ok(deleted.deleted() > 0)
    }
}
