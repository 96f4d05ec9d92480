//! Side-by-side figures in one run: the runner on `store::Memory` against two
//! hand-written `Mutex<HashMap>` compare-and-set loops doing the same
//! transition, one keeping typed states and one keeping JSON, as commands per
//! second and time ratios; then one machine's transition written as a
//! hand-written `match` against the same machine written with the generated
//! handlers. `cargo bench -p machine-workspace --bench compare`; with
//! `-- matching`, only the second table.

// Command counts stay far below 2^52, so converting them to f64 for rates is exact.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::matching::{self, GeneratedTickets, HandTickets};
use common::{Accounts, Baseline, DEPOSIT, JsonBaseline};
use machine_core::Runner;
use machine_core::store::Memory;
use std::sync::Arc;
use std::time::Instant;

const ROUNDS: usize = 5;
const SINGLE_OPS: u64 = 200_000;
const TASKS: u64 = 8;
const OPS_PER_TASK: u64 = 50_000;

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
        "{:<34} {:>14} {:>14} {:>14} {:>8} {:>8}",
        "workload (median of 5 rounds)", "typed cmd/s", "json cmd/s", "runner cmd/s", "vs typed", "vs json"
    );
    let (base, json, framework) = median_three(|| {
        let baseline = Baseline::default();
        let start = Instant::now();
        single.block_on(async {
            for _ in 0..SINGLE_OPS {
                std::hint::black_box(baseline.handle("acct-1", &DEPOSIT));
            }
        });
        let baseline_rate = SINGLE_OPS as f64 / start.elapsed().as_secs_f64();

        let json = JsonBaseline::default();
        let start = Instant::now();
        single.block_on(async {
            for _ in 0..SINGLE_OPS {
                std::hint::black_box(json.handle("acct-1", &DEPOSIT));
            }
        });
        let json_rate = SINGLE_OPS as f64 / start.elapsed().as_secs_f64();

        let runner = Runner::<Accounts, _>::new(Memory::new(), ());
        let start = Instant::now();
        single.block_on(async {
            for _ in 0..SINGLE_OPS {
                std::hint::black_box(runner.handle("acct-1", &DEPOSIT).await.expect("no conflicts"));
            }
        });
        (baseline_rate, json_rate, SINGLE_OPS as f64 / start.elapsed().as_secs_f64())
    });
    report("1 task, one id", base, json, framework);

    let (base, json, framework) = median_three(|| {
        let baseline = Arc::new(Baseline::default());
        let start = Instant::now();
        multi.block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let baseline = baseline.clone();
                    tokio::spawn(async move {
                        let id = format!("acct-{task}");
                        for _ in 0..OPS_PER_TASK {
                            std::hint::black_box(baseline.handle(&id, &DEPOSIT));
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("task");
            }
        });
        let baseline_rate = (TASKS * OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64();

        let json = Arc::new(JsonBaseline::default());
        let start = Instant::now();
        multi.block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let json = json.clone();
                    tokio::spawn(async move {
                        let id = format!("acct-{task}");
                        for _ in 0..OPS_PER_TASK {
                            std::hint::black_box(json.handle(&id, &DEPOSIT));
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("task");
            }
        });
        let json_rate = (TASKS * OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64();

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
        (baseline_rate, json_rate, (TASKS * OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64())
    });
    report("8 tasks, distinct ids, 2 workers", base, json, framework);

    matching();
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

/// Runs `round` ROUNDS times and returns the median of each of its three rates.
fn median_three(mut round: impl FnMut() -> (f64, f64, f64)) -> (f64, f64, f64) {
    let rounds: Vec<(f64, f64, f64)> = (0..ROUNDS).map(|_| round()).collect();
    let median = |pick: fn(&(f64, f64, f64)) -> f64| {
        let mut rates: Vec<f64> = rounds.iter().map(pick).collect();
        rates.sort_by(f64::total_cmp);
        rates[ROUNDS / 2]
    };
    (median(|r| r.0), median(|r| r.1), median(|r| r.2))
}

fn report(workload: &str, typed: f64, json: f64, runner: f64) {
    // Time ratios: how many times longer a command takes through the runner.
    println!(
        "{workload:<34} {typed:>14.0} {json:>14.0} {runner:>14.0} {:>7.2}x {:>7.2}x",
        typed / runner,
        json / runner
    );
}
