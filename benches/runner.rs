//! Criterion: `Runner::handle` on `store::Memory` against the hand-written
//! `Mutex<HashMap>` compare-and-set loop, one task and eight concurrent tasks
//! on distinct ids. `cargo bench -p machine-workspace --bench runner`.

// `criterion_group!` generates a public function we cannot document.
#![allow(missing_docs)]

mod common;

use common::{Accounts, Baseline, DEPOSIT, JsonBaseline};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use machine_core::Runner;
use machine_core::store::Memory;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn single_task(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("handle/1 task");
    group.throughput(Throughput::Elements(1));

    let baseline = Baseline::default();
    group.bench_function("baseline Mutex<HashMap> CAS", |b| {
        b.to_async(&runtime).iter(|| async { baseline.handle("acct-1", &DEPOSIT) });
    });
    let json = JsonBaseline::default();
    group.bench_function("baseline Mutex<HashMap> CAS keeping JSON", |b| {
        b.to_async(&runtime).iter(|| async { json.handle("acct-1", &DEPOSIT) });
    });
    let runner = Runner::<Accounts, _>::new(Memory::new(), ());
    group.bench_function("Runner + store::Memory", |b| {
        b.to_async(&runtime).iter(|| async { runner.handle("acct-1", &DEPOSIT).await.unwrap() });
    });
    group.finish();
}

const TASKS: usize = 8;

/// Runs `iters` commands on each of eight tasks (distinct ids) and returns the
/// wall time; criterion divides by `iters`, so a figure is the time for eight
/// commands that may run in parallel.
fn eight_tasks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("handle/8 tasks");
    group.throughput(Throughput::Elements(TASKS as u64));

    let baseline = Arc::new(Baseline::default());
    group.bench_function(BenchmarkId::new("baseline Mutex<HashMap> CAS", TASKS), |b| {
        b.iter_custom(|iters| {
            let baseline = baseline.clone();
            runtime.block_on(spawn_all(iters, move |id: Arc<str>| {
                let baseline = baseline.clone();
                async move {
                    baseline.handle(&id, &DEPOSIT);
                }
            }))
        });
    });
    let runner = Runner::<Accounts, _>::new(Memory::new(), ());
    group.bench_function(BenchmarkId::new("Runner + store::Memory", TASKS), |b| {
        b.iter_custom(|iters| {
            let runner = runner.clone();
            runtime.block_on(spawn_all(iters, move |id: Arc<str>| {
                let runner = runner.clone();
                async move {
                    runner.handle(&id, &DEPOSIT).await.unwrap();
                }
            }))
        });
    });
    group.finish();
}

async fn spawn_all<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn(Arc<str>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let op = op.clone();
            let id: Arc<str> = format!("acct-{task}").into();
            tokio::spawn(async move {
                for _ in 0..iters {
                    op(id.clone()).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, single_task, eight_tasks);
criterion_main!(benches);
