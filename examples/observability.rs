//! What an operator sees: a contended workload on the in-memory store,
//! observed through the `observe` feature with the Prometheus exporter
//! (rendering the scrape text, no HTTP listener) and `tracing-subscriber`'s
//! formatter. Runs for about two seconds, then prints a few log lines and an
//! excerpt of the scrape. `cargo run -p machine-workspace --example observability --features observe`.
//!
//! Writers whose async transition awaits (as one calling a service would)
//! overlap on two hot records, so they conflict and retry; two impatient
//! writers with a small retry budget give up (`WARN`); a third runner
//! coalesces its writers into group commits; one payment fails, is recorded
//! (`WARN`) and recovered (`INFO`). A last, short phase logs at `DEBUG` to
//! show what explains a retry storm.

use machine_core::observe::{self, COMMAND_ATTEMPTS, CONFLICT_GAP, GROUP_COMMIT_SIZE};
use machine_core::prelude::*;
use machine_core::store::Memory;
use machine_core::{AsyncMachine, Coalescing};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Level;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Stock {
    #[state(initial)]
    Empty,
    Held(u64),
    #[state(failure)]
    Failed(Failure<StockCommand, Stock>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Stock)]
enum StockCommand {
    #[command(from(Empty, Held), to(Held))]
    Receive(u64),
    #[command(from(Empty, Held), to(Held))]
    Audit,
}

#[derive(Debug, thiserror::Error)]
enum StockError {
    #[error("nothing received")]
    Nothing,
    #[error("audit service unavailable")]
    AuditDown,
}

/// Whether the audit service answers.
struct Deps {
    audit_up: AtomicBool,
}

struct Warehouse;

impl AsyncMachine for Warehouse {
    type State = Stock;
    type Command = StockCommand;
    type Deps = Deps;
    type Error = StockError;

    async fn transition(deps: &Deps, command: &StockCommand, state: &Stock) -> Result<Stock, StockError> {
        // As a call to another service would: other writers run meanwhile.
        tokio::task::yield_now().await;
        let held = if let Stock::Held(n) = state { *n } else { 0 };
        match command {
            StockCommand::Receive(0) => Err(StockError::Nothing),
            StockCommand::Receive(n) => Ok(Stock::Held(held + n)),
            StockCommand::Audit if deps.audit_up.load(Ordering::SeqCst) => Ok(Stock::Held(held)),
            StockCommand::Audit => Err(StockError::AuditDown),
        }
    }
}

impl RecordFailures for Warehouse {
    fn failure(error: &StockError) -> Option<String> {
        matches!(error, StockError::AuditDown).then(|| error.to_string())
    }
}

type Shelf = Runner<Warehouse, Memory>;

fn deps() -> Deps {
    Deps { audit_up: AtomicBool::new(true) }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Histograms as Prometheus histograms (buckets), not summaries.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0])?
        .set_buckets_for_metric(Matcher::Full(COMMAND_ATTEMPTS.into()), &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0])?
        .set_buckets_for_metric(Matcher::Full(CONFLICT_GAP.into()), &[1.0, 2.0, 4.0, 8.0])?
        .set_buckets_for_metric(Matcher::Full(GROUP_COMMIT_SIZE.into()), &[1.0, 2.0, 4.0, 8.0, 16.0, 64.0])?
        .build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    observe::describe();
    // INFO, as in production: only give-ups, failures and recoveries show.
    tracing_subscriber::fmt().with_max_level(Level::INFO).with_ansi(false).without_time().init();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(contended(Duration::from_secs(2)));

    println!("\n--- DEBUG, two writers on one record ---");
    let debug = tracing_subscriber::fmt()
        .with_max_level(Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::with_default(debug, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let shelf = Shelf::new(Memory::new(), deps());
            let (a, b) = tokio::join!(
                shelf.handle("sku-9", &StockCommand::Receive(1)),
                shelf.handle("sku-9", &StockCommand::Receive(2))
            );
            a.and(b).expect("retried until committed");
        });
    });

    println!("\n--- scrape excerpt ---");
    for line in scrape.render().lines().filter(|line| excerpt(line)) {
        println!("{line}");
    }
    Ok(())
}

/// The contended workload, for about `run` of wall time.
async fn contended(run: Duration) {
    let until = Instant::now() + run;
    // One store (clones of `Memory` share it), as several services would.
    let store = Memory::new();
    let patient = Shelf::new(store.clone(), deps());
    let impatient = Shelf::new(store.clone(), deps()).retry(Retry::fixed(Duration::ZERO).max_attempts(2));
    let coalesced = Shelf::new(store, deps()).coalesce(Coalescing::default());
    let mut tasks = Vec::new();
    for writer in 0..16_u64 {
        let (shelf, grouped) = (patient.clone(), coalesced.clone());
        tasks.push(tokio::spawn(async move {
            let id = if writer % 2 == 0 { "sku-1" } else { "sku-2" };
            let mut sent = 0_u64;
            while Instant::now() < until {
                // Every 50th command receives nothing: a refusal.
                let command = if sent % 50 == 49 { StockCommand::Receive(0) } else { StockCommand::Receive(1) };
                let _ = shelf.handle(id, &command).await;
                let _ = grouped.handle("sku-3", &StockCommand::Receive(1)).await;
                sent += 1;
            }
        }));
    }
    for _ in 0..2 {
        let shelf = impatient.clone();
        tasks.push(tokio::spawn(async move {
            // Three tries each, far apart, on a record others hammer.
            for _ in 0..3 {
                tokio::time::sleep(run / 4).await;
                let _ = shelf.handle("sku-1", &StockCommand::Receive(1)).await;
            }
        }));
    }
    let hammer = impatient.clone().retry(Retry::default());
    tasks.push(tokio::spawn(async move {
        while Instant::now() < until {
            let _ = hammer.handle("sku-1", &StockCommand::Receive(1)).await;
        }
    }));
    let audited = patient.clone().record_failures();
    audited.deps().audit_up.store(false, Ordering::SeqCst);
    let _ = audited.handle("sku-7", &StockCommand::Audit).await; // recorded: WARN
    audited.deps().audit_up.store(true, Ordering::SeqCst);
    let _ = audited.recover("sku-7").await; // INFO
    for task in tasks {
        let _ = task.await;
    }
}

/// The lines worth showing: help and type lines, counters and the count and
/// sum of each histogram (its buckets are left out for brevity).
fn excerpt(line: &str) -> bool {
    line.contains("machine_") && !line.contains("_bucket{")
}
