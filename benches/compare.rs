//! Side-by-side figures in one run: the runner on `store::Memory` against
//! hand-written `Mutex<HashMap>` compare-and-set loops doing the same
//! transition (one keeping typed states, one also keeping a bounded history
//! as the store does, one keeping JSON), as commands per second and time
//! ratios; then one machine's transition written as a hand-written `match`
//! against the same machine written with the generated handlers.
//! `cargo bench -p machine-workspace --bench compare`; with `-- matching`,
//! only the second table.

// Command counts stay far below 2^52, so converting them to f64 for rates is exact.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::matching::{self, GeneratedTickets, HandTickets};
use common::{Accounts, Baseline, DEPOSIT, HistoryBaseline, JsonBaseline};
use machine_core::Runner;
use machine_core::store::Memory;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Runtime;

const ROUNDS: usize = 5;
const SINGLE_OPS: u64 = 200_000;
const TASKS: u64 = 16;
const OPS_PER_TASK: u64 = 25_000;

/// The implementations measured, in the order of the table's columns.
const KINDS: usize = 4;
const TYPED: usize = 0;
const HISTORY: usize = 1;
const JSON: usize = 2;
const RUNNER: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; the filter `matching` runs only the
    // second table, any other filter is accepted and ignored.
    if std::env::args().skip(1).any(|arg| arg == "matching") {
        matching();
        return;
    }
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    println!(
        "{:<36} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "workload (median of 5 rounds)", "typed cmd/s", "+history", "json cmd/s", "runner", "vs typed", "vs +hist"
    );
    let rates = medians(|kind| match kind {
        TYPED => {
            let baseline = Baseline::default();
            sync_single(&single, move |id| drop(std::hint::black_box(baseline.handle(id, &DEPOSIT))))
        }
        HISTORY => {
            let baseline = HistoryBaseline::default();
            sync_single(&single, move |id| drop(std::hint::black_box(baseline.handle(id, &DEPOSIT))))
        }
        JSON => {
            let baseline = JsonBaseline::default();
            sync_single(&single, move |id| drop(std::hint::black_box(baseline.handle(id, &DEPOSIT))))
        }
        _ => {
            let runner = Runner::<Accounts, _>::new(Memory::new(), ());
            let start = Instant::now();
            single.block_on(async {
                for _ in 0..SINGLE_OPS {
                    std::hint::black_box(runner.handle("acct-1", &DEPOSIT).await.expect("no conflicts"));
                }
            });
            SINGLE_OPS as f64 / start.elapsed().as_secs_f64()
        }
    });
    report("1 task, one id", rates);

    let rates = medians(|kind| match kind {
        TYPED => {
            let baseline = Baseline::default();
            sync_tasks(&multi, move |id| drop(std::hint::black_box(baseline.handle(id, &DEPOSIT))))
        }
        HISTORY => {
            let baseline = HistoryBaseline::default();
            sync_tasks(&multi, move |id| drop(std::hint::black_box(baseline.handle(id, &DEPOSIT))))
        }
        JSON => {
            let baseline = JsonBaseline::default();
            sync_tasks(&multi, move |id| drop(std::hint::black_box(baseline.handle(id, &DEPOSIT))))
        }
        _ => {
            let runner = Runner::<Accounts, _>::new(Memory::new(), ());
            let start = Instant::now();
            multi.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|task| {
                        let runner = runner.clone();
                        tokio::spawn(async move {
                            let id = format!("acct-{task}");
                            for _ in 0..OPS_PER_TASK {
                                std::hint::black_box(runner.handle(&id, &DEPOSIT).await.expect("distinct ids"));
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
            });
            (TASKS * OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64()
        }
    });
    report("16 tasks, own ids, 2 workers", rates);

    matching();
}

/// Commands per second of a hand-written loop called `SINGLE_OPS` times on
/// one record from one task.
fn sync_single(runtime: &Runtime, call: impl Fn(&str)) -> f64 {
    let start = Instant::now();
    runtime.block_on(async {
        for _ in 0..SINGLE_OPS {
            call("acct-1");
        }
    });
    SINGLE_OPS as f64 / start.elapsed().as_secs_f64()
}

/// Commands per second of a hand-written loop called by `TASKS` tasks, each
/// on its own record.
fn sync_tasks(runtime: &Runtime, call: impl Fn(&str) + Send + Sync + 'static) -> f64 {
    let call = Arc::new(call);
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let call = call.clone();
                tokio::spawn(async move {
                    let id = format!("acct-{task}");
                    for _ in 0..OPS_PER_TASK {
                        call(&id);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    (TASKS * OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64()
}

/// The median rate of each implementation over `ROUNDS` rounds; each round
/// measures all of them, starting with a different one each time, so a
/// machine that slows down during the run slows every column alike.
fn medians(mut measure: impl FnMut(usize) -> f64) -> [f64; KINDS] {
    let mut rates = [[0.0; KINDS]; ROUNDS];
    for (round, rates) in rates.iter_mut().enumerate() {
        for step in 0..KINDS {
            let kind = (round + step) % KINDS;
            rates[kind] = measure(kind);
        }
    }
    std::array::from_fn(|kind| {
        let mut column: Vec<f64> = rates.iter().map(|round| round[kind]).collect();
        column.sort_by(f64::total_cmp);
        column[ROUNDS / 2]
    })
}

fn report(workload: &str, rates: [f64; KINDS]) {
    // Time ratios: how many times longer a command takes through the runner.
    println!(
        "{workload:<36} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>8.2}x {:>8.2}x",
        rates[TYPED],
        rates[HISTORY],
        rates[JSON],
        rates[RUNNER],
        rates[TYPED] / rates[RUNNER],
        rates[HISTORY] / rates[RUNNER],
    );
}

/// Rounds of the ticket machine's seven commands per measurement.
const MATCH_ROUNDS: usize = 2_000_000;

/// Interleaved rounds of the second table.
const MATCH_PASSES: usize = 3;

/// The hand-written `match` against the generated handlers, the same
/// transitions in the same order, as nanoseconds per transition: each
/// round measures both, one right after the other (the first to run
/// alternating between rounds), so a loaded machine slows both alike.
fn matching() {
    println!();
    println!(
        "{:<34} {:>14} {:>15} {:>8}",
        "transition (3 interleaved rounds)", "hand ns/op", "generated ns/op", "ratio"
    );
    let transitions = (MATCH_ROUNDS * matching::ROUND.len()) as f64;
    let time = |run: fn(usize) -> matching::Ticket| {
        let start = Instant::now();
        let state = run(MATCH_ROUNDS);
        (start.elapsed().as_secs_f64() * 1e9 / transitions, state)
    };
    let mut rounds = Vec::new();
    for pass in 0..MATCH_PASSES {
        let ((hand, hand_state), (generated, generated_state)) = if pass % 2 == 0 {
            let hand = time(matching::run::<HandTickets>);
            (hand, time(matching::run::<GeneratedTickets>))
        } else {
            let generated = time(matching::run::<GeneratedTickets>);
            (time(matching::run::<HandTickets>), generated)
        };
        assert_eq!(hand_state, generated_state, "both styles compute the same states");
        println!("{:<34} {hand:>14.2} {generated:>15.2} {:>7.2}x", format!("  round {}", pass + 1), generated / hand);
        rounds.push((hand, generated));
    }
    let median = |pick: fn(&(f64, f64)) -> f64| {
        let mut times: Vec<f64> = rounds.iter().map(pick).collect();
        times.sort_by(f64::total_cmp);
        times[MATCH_PASSES / 2]
    };
    let (hand, generated) = (median(|r| r.0), median(|r| r.1));
    println!("{:<34} {hand:>14.2} {generated:>15.2} {:>7.2}x", "ticket: 7 commands, 3 states", generated / hand);
}
