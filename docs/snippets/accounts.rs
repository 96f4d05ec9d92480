// The account machine of docs/decisions.md (the one of
// examples/bank_transfer.rs), for its snippets: they include this file in
// one hidden line. machine-core's doctests compile it (machine-core/src/docs.rs).

#[allow(unused_imports)]
use docs::*;

/// What the snippets use without naming it; an explicit `use` in a snippet
/// shadows these glob imports without a conflict.
#[allow(unused_imports)]
mod docs {
    pub use machine_core::decision::{Decided, Decision, Draft, Key, Verdict};
    pub use machine_core::prelude::*;
    pub use machine_core::store::Memory;
    pub use serde::{Deserialize, Serialize};
}

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Account {
    #[state(initial)]
    Open { balance: i64 },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Account)]
pub enum Money {
    #[command(from(Open), to(Open))]
    Deposit(i64),
    #[command(from(Open), to(Open))]
    Withdraw(i64),
}

#[derive(Debug, thiserror::Error)]
#[error("overdraft: balance {balance}, withdrawal {amount}")]
pub struct Overdraft {
    balance: i64,
    amount: i64,
}

pub struct Accounts;

impl Machine for Accounts {
    type State = Account;
    type Command = Money;
    type Deps = ();
    type Error = Overdraft;

    fn transition((): &(), command: &Money, Account::Open { balance }: &Account) -> Result<Account, Overdraft> {
        match *command {
            Money::Deposit(amount) => Ok(Account::Open { balance: balance + amount }),
            Money::Withdraw(amount) if amount > *balance => Err(Overdraft { balance: *balance, amount }),
            Money::Withdraw(amount) => Ok(Account::Open { balance: balance - amount }),
        }
    }
}

/// Opens account `id` with `balance`, as one decision.
pub async fn open(store: &Memory, id: &str, balance: i64) -> Result<(), Error<machine_core::decision::Rejection>> {
    let key = Key::<Accounts>::new(id);
    Decision::new(store)
        .read(&key)
        .attempt(|draft| {
            draft.apply(&key, &(), &Money::Deposit(balance))?;
            Ok(Verdict::Commit(()))
        })
        .await?;
    Ok(())
}

/// What a committed deposit hands to the follow-up.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub account: String,
    pub amount: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("the mail server is down")]
pub struct MailError;

/// Sends receipts; stands in for a mail client.
pub struct Mailer;

impl Mailer {
    pub async fn send(&self, receipt: Receipt) -> Result<(), MailError> {
        println!("sent a receipt for {} to {}", receipt.amount, receipt.account);
        Ok(())
    }
}
