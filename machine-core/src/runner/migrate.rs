//! The batch rewrite of old records: pages through every record of a
//! machine and rewrites those stored at an older schema version, one
//! pipeline call each (a `Rewrite` intent), so versions, conflicts, retries
//! and history behave as for any command. A driver, not a loop of its own.

use super::Runner;
use super::group::Intent;
use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::store::{Query, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;

/// How [`Runner::migrate`] pages and reports.
///
/// ```
/// use machine_core::evolution::Rewrite;
///
/// let rewrite = Rewrite::default().page(500).after("order-0999").progress(|progress| {
///     eprintln!("{} scanned, {} rewritten, {} failed", progress.scanned, progress.rewritten, progress.failed);
/// });
/// # drop(rewrite);
/// ```
#[derive(Clone)]
pub struct Rewrite {
    page: u32,
    after: Option<String>,
    progress: Option<Report>,
}

/// What [`Rewrite::progress`] calls after every page.
type Report = Arc<dyn Fn(&Progress) + Send + Sync>;

impl Default for Rewrite {
    /// Pages of 256 records from the first id, no progress reports.
    fn default() -> Self {
        Self { page: 256, after: None, progress: None }
    }
}

impl Rewrite {
    /// Lists `records` (at least 1) per page.
    #[must_use]
    pub fn page(mut self, records: u32) -> Self {
        self.page = records.max(1);
        self
    }

    /// Starts after id `id`: resumes a run that stopped (pass the last
    /// [`Progress::last_id`] it reported).
    #[must_use]
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    /// Calls `report` after every page, with the totals so far.
    #[must_use]
    pub fn progress(mut self, report: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }
}

impl fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewrite")
            .field("page", &self.page)
            .field("after", &self.after)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The totals of a [`Runner::migrate`] run so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records listed.
    pub scanned: u64,
    /// Records rewritten at the current schema version.
    pub rewritten: u64,
    /// Records that could not be rewritten (see [`Migrated::failures`]).
    pub failed: u64,
    /// The last id listed: where to resume ([`Rewrite::after`]).
    pub last_id: Option<String>,
}

/// What a [`Runner::migrate`] run did.
#[derive(Debug)]
pub struct Migrated<E> {
    /// The totals.
    pub progress: Progress,
    /// The records that could not be rewritten, with why: one that does
    /// not decode (corrupt, or not covered by a migration), or one stored
    /// by a newer schema version, which is left as it is.
    pub failures: Vec<(String, Error<E>)>,
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store + Query,
{
    /// Rewrites every record of this machine stored at an older schema
    /// version at the current one ([`Machine::SCHEMA`](crate::Machine::SCHEMA)),
    /// so reads stop paying for the migrations and older code is no longer
    /// needed to read them. Optional: reads migrate on the fly anyway.
    ///
    /// Records are listed by id, `rewrite`'s page at a time
    /// ([`Query::records`]); each old one goes through the pipeline like a
    /// command: loaded, decoded and migrated, written back with its version
    /// raised by one if nobody wrote it in between (retried by the policy
    /// otherwise), with a history entry of origin
    /// [`Migration`](crate::store::Origin::Migration) and no command.
    /// Records at the current version are not written. A record that
    /// cannot be rewritten is reported in [`Migrated::failures`] and the
    /// run goes on; a store failure while listing ends it with `Err`
    /// (resume with [`Rewrite::after`]).
    pub async fn migrate(&self, rewrite: Rewrite) -> Result<Migrated<M::Error>, Error<M::Error>> {
        let mut progress = Progress { last_id: rewrite.after.clone(), ..Progress::default() };
        let mut failures = Vec::new();
        loop {
            let page = self.store.records(M::NAME, progress.last_id.as_deref(), rewrite.page).await?;
            let Some(last) = page.last() else { break };
            progress.last_id = Some(last.id.clone());
            let full = page.len() >= rewrite.page as usize;
            for listed in page {
                progress.scanned += 1;
                if listed.record.schema == M::SCHEMA {
                    continue;
                }
                match self.one(self.direct(), &listed.id, &Intent::Rewrite, false).await {
                    Ok(_) => progress.rewritten += 1,
                    Err(error) => {
                        progress.failed += 1;
                        failures.push((listed.id, error));
                    }
                }
            }
            if let Some(report) = &rewrite.progress {
                report(&progress);
            }
            if !full {
                break;
            }
        }
        Ok(Migrated { progress, failures })
    }
}
