//! The machine both benchmarks run, and the hand-written baseline the runner
//! is measured against: a `Mutex<HashMap>` compare-and-set loop doing the
//! same transition on the same typed state.

// Each bench binary uses the part of this module it measures.
#![allow(dead_code)]

pub(crate) mod matching;

use machine_core::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Account {
    #[state(initial)]
    New,
    Open {
        owner: String,
        balance: i64,
        deposits: u32,
    },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Account)]
pub(crate) enum AccountCommand {
    #[command(from(New, Open), to(Open))]
    Deposit { cents: i64 },
}

pub(crate) struct Accounts;

impl Machine for Accounts {
    type State = Account;
    type Command = AccountCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), command: &AccountCommand, state: &Account) -> Result<Account, Self::Error> {
        let AccountCommand::Deposit { cents } = command;
        Ok(match state {
            Account::New => Account::Open { owner: "Ada Lovelace".into(), balance: *cents, deposits: 1 },
            Account::Open { owner, balance, deposits } => {
                Account::Open { owner: owner.clone(), balance: balance + cents, deposits: deposits + 1 }
            }
        })
    }
}

pub(crate) const DEPOSIT: AccountCommand = AccountCommand::Deposit { cents: 100 };

/// What a careful engineer writes without the framework: load a copy under
/// the lock, run the transition outside it, store only if the version held.
#[derive(Default)]
pub(crate) struct Baseline {
    records: Mutex<HashMap<String, (u64, Account)>>,
}

impl Baseline {
    pub(crate) fn handle(&self, id: &str, command: &AccountCommand) -> (Account, u64) {
        loop {
            let (version, state) = {
                let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
                records.get(id).cloned().unwrap_or((0, Account::initial()))
            };
            let Ok(next) = Accounts::transition(&(), command, &state);
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            let current = records.get(id).map_or(0, |(v, _)| *v);
            if current == version {
                records.insert(id.to_owned(), (version + 1, next.clone()));
                return (next, version + 1);
            }
        }
    }
}

/// The same loop when records are kept as JSON, as any durable store keeps
/// them: decode after load, encode before save. The difference between this
/// and [`Baseline`] is the price of serialisation alone.
#[derive(Default)]
pub(crate) struct JsonBaseline {
    records: Mutex<HashMap<String, (u64, String)>>,
}

impl JsonBaseline {
    pub(crate) fn handle(&self, id: &str, command: &AccountCommand) -> (Account, u64) {
        loop {
            let (version, json) = {
                let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
                records.get(id).cloned().unwrap_or((0, String::new()))
            };
            let state = if json.is_empty() { Account::initial() } else { serde_json::from_str(&json).expect("valid") };
            let Ok(next) = Accounts::transition(&(), command, &state);
            let encoded = serde_json::to_string(&next).expect("encodes");
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            let current = records.get(id).map_or(0, |(v, _)| *v);
            if current == version {
                records.insert(id.to_owned(), (version + 1, encoded));
                return (next, version + 1);
            }
        }
    }
}

/// The typed loop when it also keeps what the runner keeps for every
/// version: a history entry (the command, the state before and after, the
/// time) shared by the record's own history and a store-wide feed, both
/// bounded as `store::Memory` bounds them by default (10,000 entries per
/// record, 100,000 in the feed). The difference between this and
/// [`Baseline`] is the price of an audit trail written by hand.
#[derive(Default)]
pub(crate) struct HistoryBaseline {
    records: Mutex<HashMap<String, Kept>>,
    /// The last sequence number handed out, and the feed's retained tail.
    feed: Mutex<(u64, VecDeque<Arc<Change>>)>,
}

/// A record: its version, its state (shared with its latest entry) and
/// its retained history.
struct Kept {
    version: u64,
    state: Arc<Account>,
    history: VecDeque<Arc<Change>>,
}

/// One version's history entry. The fields are what an audit reads; the
/// bench only keeps them.
#[allow(dead_code)]
struct Change {
    seq: u64,
    version: u64,
    command: AccountCommand,
    before: Option<Arc<Account>>,
    after: Arc<Account>,
    at: u64,
}

const PER_RECORD: usize = 10_000;
const FEED: usize = 100_000;

impl HistoryBaseline {
    pub(crate) fn handle(&self, id: &str, command: &AccountCommand) -> (Account, u64) {
        loop {
            let (version, before) = {
                let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
                records.get(id).map_or((0, None), |kept| (kept.version, Some(kept.state.clone())))
            };
            let initial = Account::initial();
            let Ok(next) = Accounts::transition(&(), command, before.as_deref().unwrap_or(&initial));
            let after = Arc::new(next.clone());
            let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
            let at = u64::try_from(at).unwrap_or(u64::MAX);
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            let current = records.get(id).map_or(0, |kept| kept.version);
            if current != version {
                continue;
            }
            let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
            feed.0 += 1;
            let change = Arc::new(Change {
                seq: feed.0,
                version: version + 1,
                command: command.clone(),
                before,
                after: after.clone(),
                at,
            });
            feed.1.push_back(change.clone());
            if feed.1.len() > FEED {
                feed.1.pop_front();
            }
            let kept = match records.get_mut(id) {
                Some(kept) => kept,
                None => records.entry(id.to_owned()).or_insert_with(|| Kept {
                    version: 0,
                    state: after.clone(),
                    history: VecDeque::new(),
                }),
            };
            kept.history.push_back(change);
            if kept.history.len() > PER_RECORD {
                kept.history.pop_front();
            }
            kept.version = version + 1;
            kept.state = after;
            return (next, version + 1);
        }
    }
}
