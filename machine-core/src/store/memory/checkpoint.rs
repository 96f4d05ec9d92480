//! The memory store's processor checkpoints and dead letters: two maps
//! under one lock of their own, never taken with a shard's.

use super::Memory;
use crate::error::StoreError;
use crate::store::key::validate_processor;
use crate::store::{Checkpoint, Checkpoints, Cursor, DeadLetter};
use std::collections::{BTreeMap, HashMap};
use std::sync::{MutexGuard, PoisonError};

/// Checkpoints by processor name; dead letters by processor, then cursor.
#[derive(Default)]
pub(super) struct Processors {
    checkpoints: HashMap<String, Checkpoint>,
    parked: BTreeMap<(String, Cursor), DeadLetter>,
}

impl Memory {
    fn processors(&self) -> MutexGuard<'_, Processors> {
        self.inner.processors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Compare-and-set on a version kept beside each checkpoint, as the SQL
/// stores do in one conditional statement.
impl Checkpoints for Memory {
    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        validate_processor(name)?;
        Ok(self.processors().checkpoints.get(name).cloned())
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
        let version = expected_version.checked_add(1).ok_or_else(|| StoreError::VersionOverflow {
            machine: "processor".to_owned(),
            id: name.to_owned(),
            version: expected_version,
        })?;
        let mut processors = self.processors();
        let current = processors.checkpoints.get(name).map_or(0, |checkpoint| checkpoint.version);
        if current != expected_version {
            return Ok(false);
        }
        let saved = Checkpoint { cursor, owner: owner.to_owned(), lease_until, version };
        processors.checkpoints.insert(name.to_owned(), saved);
        Ok(true)
    }

    async fn park(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        validate_processor(&letter.processor)?;
        self.processors().parked.insert((letter.processor.clone(), letter.cursor), letter.clone());
        Ok(())
    }

    async fn dead_letters(
        &self,
        processor: &str,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        validate_processor(processor)?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let processors = self.processors();
        let from = (processor.to_owned(), after.unwrap_or(Cursor::START));
        Ok(processors
            .parked
            .range(from..)
            .take_while(|((name, _), _)| name == processor)
            .filter(|((_, cursor), _)| after.is_none_or(|after| *cursor > after))
            .take(limit)
            .map(|(_, letter)| letter.clone())
            .collect())
    }

    async fn unpark(&self, processor: &str, cursor: Cursor) -> Result<bool, StoreError> {
        validate_processor(processor)?;
        Ok(self.processors().parked.remove(&(processor.to_owned(), cursor)).is_some())
    }
}
