//! The machine both benchmarks run, and the hand-written baseline the runner
//! is measured against: a `Mutex<HashMap>` compare-and-set loop doing the
//! same transition on the same typed state.

// Each bench binary uses the part of this module it measures.
#![allow(dead_code)]

pub(crate) mod matching;

use machine_core::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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
