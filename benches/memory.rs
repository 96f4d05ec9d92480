//! Bytes the memory store holds per record and per history entry, read
//! from the process's resident set (Linux `/proc/self/statm`) around bulk
//! writes through the runner; and the resident set after many commands on a
//! few records with the default retention, which stays flat.
//! `cargo bench -p machine-workspace --bench memory`.

// Byte counts are far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use common::{Accounts, DEPOSIT};
use machine_core::Runner;
use machine_core::store::{Memory, Retention};

const RECORDS: usize = 200_000;
const ENTRIES: usize = 200_000;

/// The resident set in bytes (0 where `/proc` is not there).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let runner = Runner::<Accounts, _>::new(Memory::with_retention(Retention::all()), ());
        let ids: Vec<String> = (0..RECORDS).map(|n| format!("account-{n:07}")).collect();
        let before = resident();
        for id in &ids {
            runner.handle(id, &DEPOSIT).await.expect("written");
        }
        let per_record = (resident() - before) as f64 / RECORDS as f64;
        let before = resident();
        for _ in 0..ENTRIES {
            runner.handle("account-0000000", &DEPOSIT).await.expect("written");
        }
        let per_entry = (resident() - before) as f64 / ENTRIES as f64;
        println!("memory store, Retention::all(), the bench's Account machine:");
        println!("  {per_record:.0} bytes per record (its first version and history entry, {RECORDS} records)");
        println!("  {per_entry:.0} bytes per further history entry ({ENTRIES} entries on one record)");

        let runner = Runner::<Accounts, _>::new(Memory::new(), ());
        let start = resident();
        for round in 1..=4 {
            for n in 0..1_000_000 {
                runner.handle(&format!("hot-{}", n % 16), &DEPOSIT).await.expect("written");
            }
            println!(
                "default retention, {round} M commands on 16 records: resident set grew {:.0} MiB",
                (resident() - start) as f64 / 1_048_576.0
            );
        }
    });
}
