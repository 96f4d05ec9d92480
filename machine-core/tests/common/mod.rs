//! What the retry and queue tests share: a counter machine, and a store
//! wrapper that makes conflicts happen on the attempts a test chooses, so no
//! test depends on timing luck.

#![allow(dead_code, unreachable_pub)]

use machine_core::prelude::*;
use machine_core::store::{Change, Commit, Memory, Record, Store};
use machine_core::{StoreError, VersionConflict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Counter {
    #[state(initial)]
    Zero,
    At(u64),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Counter)]
pub enum Count {
    #[command(from(Zero, At), to(At))]
    Add(u64),
    /// Refused by the transition: a permanent error.
    #[command(from(Zero, At), to(At))]
    Poison,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("poisoned")]
pub struct Poisoned;

pub struct Counters;

impl Machine for Counters {
    type State = Counter;
    type Command = Count;
    type Deps = ();
    type Error = Poisoned;

    fn transition((): &(), command: &Count, state: &Counter) -> Result<Counter, Poisoned> {
        let Count::Add(n) = command else { return Err(Poisoned) };
        Ok(Counter::At(match state {
            Counter::Zero => *n,
            Counter::At(total) => total + n,
        }))
    }
}

/// A memory store with a script of conflicts: before the commits whose
/// numbers (1-based, counted across the whole store) are listed, `rivals`
/// other writers save the record first (without changing its value). It can also freeze loads at a stale
/// snapshot (a lagging replica), and counts every load and commit.
#[derive(Clone, Default)]
pub struct Contended {
    pub inner: Memory,
    script: Arc<Mutex<Script>>,
    stale: Arc<Mutex<Option<Record>>>,
    always: Arc<AtomicBool>,
    pub loads: Arc<AtomicU32>,
    pub commits: Arc<AtomicU32>,
}

#[derive(Default)]
struct Script {
    conflicted: BTreeSet<u32>,
    rivals: u32,
}

impl Contended {
    /// Rivals write before the listed commits (one rival each).
    pub fn conflicts_on(commits: impl IntoIterator<Item = u32>) -> Self {
        let store = Self::default();
        store.script.lock().unwrap().conflicted.extend(commits);
        store.script.lock().unwrap().rivals = 1;
        store
    }

    /// A rival writes before every commit.
    pub fn always() -> Self {
        let store = Self::conflicts_on([]);
        store.always.store(true, Ordering::SeqCst);
        store
    }

    /// `n` rivals write before each conflicted commit (a version gap of `n`).
    pub fn rivals(self, n: u32) -> Self {
        self.script.lock().unwrap().rivals = n;
        self
    }

    /// Stops or starts injecting rivals before every commit.
    pub fn set_always(&self, on: bool) {
        self.always.store(on, Ordering::SeqCst);
    }

    /// From now on, every load returns what record `(machine, id)` holds now
    /// (which must exist).
    pub async fn freeze_loads(&self, machine: &str, id: &str) {
        let snapshot = self.inner.load(machine, id).await.unwrap().expect("a record to freeze");
        *self.stale.lock().unwrap() = Some(snapshot);
    }

    /// Loads plus commits: zero means the store was not touched.
    pub fn touches(&self) -> u32 {
        self.loads.load(Ordering::SeqCst) + self.commits.load(Ordering::SeqCst)
    }
}

impl Store for Contended {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let stale = self.stale.lock().unwrap().clone();
        match stale {
            Some(snapshot) => Ok(Some(snapshot)),
            None => self.inner.load(machine, id).await,
        }
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let number = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let rivals = {
            let script = self.script.lock().unwrap();
            let conflicted = self.always.load(Ordering::SeqCst) || script.conflicted.contains(&number);
            if conflicted { script.rivals } else { 0 }
        };
        for _ in 0..rivals {
            // A rival that only moves the version: it rewrites the current
            // state (or creates the record at zero), so counts stay exact.
            let mut rival = commit.writes[0].clone();
            let current = self.inner.load(rival.machine, rival.id).await?;
            rival.expected = current.as_ref().map_or(0, |r| r.version);
            (rival.state, rival.kind) = match &current {
                Some(record) => (record.state.to_string(), "At"),
                None => (r#"{"At":0}"#.to_owned(), "At"),
            };
            rival.command = r#"{"Add":0}"#;
            self.inner.commit(Commit::write(rival)).await?;
        }
        self.inner.commit(commit).await
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }
}

/// The conflict a runner reports on record `id` of the counter machine.
pub fn conflict(id: &str, attempted: u64, current: u64) -> VersionConflict {
    VersionConflict::new("Counter", id, attempted, current)
}
