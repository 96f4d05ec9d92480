//! The price of observing the single-command hot path: `Runner::handle` on
//! `store::Memory`, one task, one record, built with the `observe` feature,
//! with nothing installed, with a Prometheus recorder, and with that
//! recorder plus an `INFO` fmt subscriber writing to a sink (production's
//! setting: the `DEBUG` spans are off, so they cost a level check).
//! Median of 5 rounds of 200,000 commands each. `cargo bench -p machine-workspace --bench observe --features observe`.

// Command counts stay far below 2^52, so converting them to f64 for rates is exact.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::{Accounts, DEPOSIT};
use machine_core::Runner;
use machine_core::store::Memory;
use metrics_exporter_prometheus::PrometheusBuilder;
use std::time::Instant;
use tracing::Level;

const ROUNDS: usize = 5;
const OPS: u64 = 200_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let round = || {
        let runner = Runner::<Accounts, _>::new(Memory::new(), ());
        let start = Instant::now();
        runtime.block_on(async {
            for _ in 0..OPS {
                std::hint::black_box(runner.handle("acct-1", &DEPOSIT).await.expect("no conflicts"));
            }
        });
        OPS as f64 / start.elapsed().as_secs_f64()
    };
    let prometheus = PrometheusBuilder::new().build_recorder();
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    // Interleaved, so drift in the machine's speed hits every setting alike.
    for _ in 0..ROUNDS {
        rates[0].push(round());
        rates[1].push(metrics::with_local_recorder(&prometheus, round));
        let info = tracing_subscriber::fmt().with_max_level(Level::INFO).with_writer(std::io::sink).finish();
        rates[2].push(tracing::subscriber::with_default(info, || metrics::with_local_recorder(&prometheus, round)));
    }
    let [none, recorder, both] = rates.map(median);
    println!("{:<46} {:>12} {:>9}", "single task, one id (median of 5 x 200,000)", "cmd/s", "time x");
    for (setting, rate) in [
        ("observe on, nothing installed", none),
        ("Prometheus recorder", recorder),
        ("Prometheus recorder + INFO fmt subscriber", both),
    ] {
        println!("{setting:<46} {rate:>12.0} {:>8.2}x", none / rate);
    }
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
