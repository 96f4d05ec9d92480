//! The service boundary on every store: idempotency keys (a repeated
//! request, a lost reply, concurrent duplicates, expiry, decisions) and
//! create / update rules, through the runner as a request handler calls it.

use super::Harness;
use machine_core::decision::{Decided, Decision, Key, Verdict};
use machine_core::prelude::*;
use machine_core::store::Store;
use machine_core::testing::{FaultyStore, Schedule};
use machine_core::{Coalescing, Request, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Account {
    #[state(initial)]
    Unopened,
    Open {
        balance: i64,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Account)]
pub(crate) enum Money {
    #[command(from(Unopened), to(Open))]
    Open,
    #[command(from(Open), to(Open))]
    Deposit { amount: i64 },
}

pub(crate) struct Accounts;

impl Machine for Accounts {
    type State = Account;
    type Command = Money;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "Account";

    fn transition((): &(), command: &Money, state: &Account) -> Result<Account, Self::Error> {
        Ok(match (command, state) {
            (Money::Deposit { amount }, Account::Open { balance }) => Account::Open { balance: balance + amount },
            _ => Account::Open { balance: 0 },
        })
    }
}

fn keyed(key: &str) -> Request<'_> {
    Request::new().key(key)
}

async fn opened<St: Store>(runner: &Runner<Accounts, St>, id: &str) {
    runner.handle_with(id, &Money::Open, Request::new().create()).await.unwrap();
}

async fn entries<St: Store>(runner: &Runner<Accounts, St>, id: &str) -> usize {
    runner.history(id).await.unwrap().len()
}

pub(crate) async fn a_repeated_key_returns_the_first_outcome_and_applies_once(store: impl Harness) {
    let runner = Runner::<Accounts, _>::new(store, ());
    opened(&runner, "acct").await;
    let deposit = Money::Deposit { amount: 5 };
    let first = runner.handle_with("acct", &deposit, keyed("req-1")).await.unwrap();
    assert_eq!((first.state.clone(), first.version, first.replayed), (Account::Open { balance: 5 }, 2, false));
    // The record moves on; the repeat still answers what the first call did.
    runner.handle("acct", &Money::Deposit { amount: 100 }).await.unwrap();
    let again = runner.handle_with("acct", &deposit, keyed("req-1")).await.unwrap();
    assert_eq!((again.state, again.version, again.replayed), (first.state, 2, true));
    assert_eq!(entries(&runner, "acct").await, 3, "applied once");
    let current = runner.get("acct").await.unwrap().unwrap();
    assert_eq!(current.state, Account::Open { balance: 105 });

    let other = runner.handle_with("acct", &Money::Deposit { amount: 6 }, keyed("req-1")).await.unwrap_err();
    assert!(
        matches!(&other, Error::KeyReused { id, key, version: 2, .. } if id == "acct" && key == "req-1"),
        "{other:?}"
    );
    assert_eq!(entries(&runner, "acct").await, 3, "a reused key writes nothing");
    // Keys belong to their record: the same key elsewhere is another request.
    opened(&runner, "other").await;
    let elsewhere = runner.handle_with("other", &deposit, keyed("req-1")).await.unwrap();
    assert!(!elsewhere.replayed);
    // Bad keys are typed errors, before anything is read or written.
    for bad in ["", "a\0b"] {
        let error = runner.handle_with("acct", &deposit, keyed(bad)).await.unwrap_err();
        assert!(
            matches!(error, Error::Store(StoreError::InvalidKey { what: "idempotency key", .. })),
            "{bad:?}: {error:?}"
        );
    }
}

pub(crate) async fn a_lost_reply_is_replayed_when_the_request_comes_again(store: impl Harness) {
    // The first commit is applied, but its reply is lost.
    let faulty = FaultyStore::new(store).lost_replies(Schedule::calls([2]));
    let runner = Runner::<Accounts, _>::new(faulty, ());
    opened(&runner, "acct").await;
    let deposit = Money::Deposit { amount: 7 };
    let lost = runner.handle_with("acct", &deposit, keyed("pay-1")).await.unwrap_err();
    assert!(lost.is_retryable(), "an unknown outcome is worth sending again: {lost:?}");
    let again = runner.handle_with("acct", &deposit, keyed("pay-1")).await.unwrap();
    assert_eq!((again.state, again.version, again.replayed), (Account::Open { balance: 7 }, 2, true));
    assert_eq!(entries(&runner, "acct").await, 2, "applied once");
}

/// Calls with one key race each other from many tasks, through `runner`
/// (`copies` clones of it): exactly one applies, the others replay it.
async fn one_key_from_many_tasks<St: Store + Clone>(runner: Runner<Accounts, St>, id: &str, tasks: usize) {
    opened(&runner, id).await;
    let calls: Vec<_> = (0..tasks)
        .map(|_| {
            let (runner, id) = (runner.clone(), id.to_owned());
            tokio::spawn(async move {
                runner.handle_with(&id, &Money::Deposit { amount: 1 }, Request::new().key("once")).await.unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for call in calls {
        let out = call.await.unwrap();
        assert_eq!((out.version, out.state), (2, Account::Open { balance: 1 }));
        applied += usize::from(!out.replayed);
    }
    assert_eq!(applied, 1, "one call applies, the rest replay it");
    assert_eq!(entries(&runner, id).await, 2);
}

pub(crate) async fn concurrent_calls_with_one_key_apply_once(store: impl Harness) {
    one_key_from_many_tasks(Runner::<Accounts, _>::new(store.clone(), ()), "racing", 16).await;
    // Coalesced, the duplicates meet in one group commit.
    let coalesced = Runner::<Accounts, _>::new(store, ()).coalesce(Coalescing::default());
    one_key_from_many_tasks(coalesced, "grouped", 16).await;
}

pub(crate) async fn keys_expire_after_the_retention(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock = Arc::clone(&now);
    let runner = Runner::<Accounts, _>::new(store, ())
        .clock(move || clock.load(Ordering::SeqCst))
        .key_retention(Duration::from_mins(1));
    opened(&runner, "acct").await;
    let deposit = Money::Deposit { amount: 1 };
    assert!(!runner.handle_with("acct", &deposit, keyed("k")).await.unwrap().replayed);
    now.fetch_add(59_000, Ordering::SeqCst);
    assert!(runner.handle_with("acct", &deposit, keyed("k")).await.unwrap().replayed, "within the retention");
    now.fetch_add(2_000, Ordering::SeqCst);
    let later = runner.handle_with("acct", &deposit, keyed("k")).await.unwrap();
    assert_eq!((later.replayed, later.version), (false, 3), "an expired key runs again");
    // And is stored anew: the next repeat replays the new outcome.
    let repeat = runner.handle_with("acct", &deposit, keyed("k")).await.unwrap();
    assert_eq!((repeat.replayed, repeat.version), (true, 3));
}

pub(crate) async fn creates_and_updates_are_checked(store: impl Harness) {
    let runner = Runner::<Accounts, _>::new(store, ());
    let missing = runner.handle_with("acct-1O1", &Money::Deposit { amount: 1 }, Request::new().update()).await;
    assert!(matches!(&missing, Err(Error::NotFound { id, .. }) if id == "acct-1O1"), "{missing:?}");
    assert!(runner.get("acct-1O1").await.unwrap().is_none(), "nothing springs into existence");

    let created = runner.handle_with("acct", &Money::Open, Request::new().create().key("open-1")).await.unwrap();
    assert_eq!((created.version, created.replayed), (1, false));
    // The same create sent again is a replay, not a conflict.
    let again = runner.handle_with("acct", &Money::Open, Request::new().create().key("open-1")).await.unwrap();
    assert_eq!((again.version, again.replayed), (1, true));
    // Another create is refused, and names the version found.
    let twice = runner.handle_with("acct", &Money::Open, Request::new().create()).await;
    assert!(matches!(&twice, Err(Error::AlreadyExists { version: 1, .. })), "{twice:?}");
    let update = runner.handle_with("acct", &Money::Deposit { amount: 2 }, Request::new().update()).await.unwrap();
    assert_eq!(update.version, 2);
    assert_eq!(entries(&runner, "acct").await, 2);
}

pub(crate) async fn a_decision_key_commits_once(store: impl Harness) {
    let runner = Runner::<Accounts, _>::new(store.clone(), ());
    opened(&runner, "a").await;
    opened(&runner, "b").await;
    let (a, b) = (Key::<Accounts>::new("a"), Key::<Accounts>::new("b"));
    let transfer = |key: &'static str| {
        let (a, b, store) = (a.clone(), b.clone(), store.clone());
        async move {
            Decision::new(&store)
                .read(&a)
                .read(&b)
                .key(key)
                .attempt(|draft| {
                    draft.apply(&a, &(), &Money::Deposit { amount: -10 })?;
                    draft.apply(&b, &(), &Money::Deposit { amount: 10 })?;
                    Ok(Verdict::Commit(()))
                })
                .await
        }
    };
    assert!(transfer("t-1").await.unwrap().is_committed());
    let again = transfer("t-1").await.unwrap();
    assert!(matches!(again, Decided::Replayed { committed_at } if committed_at > 0), "{again:?}");
    assert_eq!(runner.get("b").await.unwrap().unwrap().state, Account::Open { balance: 10 });
    // One key names one request: the same key with other reads is refused
    // (a decision's key is kept under its first read).
    let c = Key::<Accounts>::new("c");
    let other = Decision::new(&store).read(&a).read(&c).key("t-1").attempt(|_| Ok(Verdict::Commit(()))).await;
    assert!(matches!(other, Err(Error::KeyReused { .. })), "{other:?}");
    // A command under a decision's key is another request too.
    let command = runner.handle_with("a", &Money::Deposit { amount: 1 }, keyed("t-1")).await;
    assert!(matches!(command, Err(Error::KeyReused { .. })), "{command:?}");
}

pub(crate) async fn records_are_listed_typed_and_counted_by_kind(store: impl Harness) {
    let runner = Runner::<Accounts, _>::new(store, ());
    for n in 0..5 {
        opened(&runner, &format!("acct-{n}")).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = runner.list(AccountKind::Open, after.as_deref(), 2).await.unwrap();
        assert!(page.records.len() <= 2);
        for (id, record) in &page.records {
            assert_eq!((&record.state, record.version), (&Account::Open { balance: 0 }, 1));
            seen.push(id.clone());
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["acct-0", "acct-1", "acct-2", "acct-3", "acct-4"]);
    assert!(runner.list(AccountKind::Unopened, None, 10).await.unwrap().records.is_empty());
    assert_eq!(runner.count(AccountKind::Open).await.unwrap(), 5);
    assert_eq!(runner.counts().await.unwrap(), [(AccountKind::Unopened, 0), (AccountKind::Open, 5)]);
}

pub(crate) async fn history_is_read_by_pages(store: impl Harness) {
    let runner = Runner::<Accounts, _>::new(store, ());
    opened(&runner, "busy").await;
    for amount in 1..=9 {
        runner.handle("busy", &Money::Deposit { amount }).await.unwrap();
    }
    let mut versions = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<_> =
            runner.history_page("busy", after, 4).await.unwrap().into_iter().map(Result::unwrap).collect();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 4);
        after = last.version;
        for entry in &page {
            // Every entry past the first knows the state before it, also
            // the first of a page.
            assert_eq!(entry.before.is_some(), entry.version > 1, "version {}", entry.version);
            versions.push(entry.version);
        }
    }
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
    let readable = |items: Vec<machine_core::HistoryItem<Money, Account>>| -> Vec<_> {
        items.into_iter().map(Result::unwrap).collect()
    };
    let whole = readable(runner.history("busy").await.unwrap());
    assert_eq!(readable(runner.history_page("busy", 3, 2).await.unwrap()), whole[3..5]);
    assert!(runner.history_page("busy", 10, 5).await.unwrap().is_empty());
    assert!(runner.history_page("never", 0, 5).await.unwrap().is_empty());
}

pub(crate) async fn expired_keys_are_forgotten_and_standing_ones_kept(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(5_000_000));
    let clock = Arc::clone(&now);
    let runner = Runner::<Accounts, _>::new(store.clone(), ())
        .clock(move || clock.load(Ordering::SeqCst))
        .key_retention(Duration::from_secs(10));
    opened(&runner, "acct").await;
    for n in 0..5 {
        runner.handle_with("acct", &Money::Deposit { amount: 1 }, keyed(&format!("old-{n}"))).await.unwrap();
    }
    now.fetch_add(20_000, Ordering::SeqCst);
    runner.handle_with("acct", &Money::Deposit { amount: 1 }, keyed("new")).await.unwrap();
    let at = now.load(Ordering::SeqCst);
    // In batches: a limit is a limit.
    assert_eq!(store.forget_keys(at, 2).await.unwrap(), 2);
    assert_eq!(store.forget_keys(at, 100).await.unwrap(), 3);
    assert_eq!(store.forget_keys(at, 100).await.unwrap(), 0);
    assert!(store.recall(Accounts::NAME, "acct", "old-0").await.unwrap().is_none());
    assert!(store.recall(Accounts::NAME, "acct", "new").await.unwrap().is_some(), "a standing key stays");
    let again = runner.handle_with("acct", &Money::Deposit { amount: 1 }, keyed("new")).await.unwrap();
    assert!(again.replayed);
}
