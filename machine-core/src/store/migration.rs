//! The SQL stores' schema migrations as data: so a service whose database
//! role may not run DDL can apply them with its own tool (`sqlx::migrate`,
//! Flyway, a DBA's script) and connect with migrations off.

/// One schema migration of a SQL store, as the SQL to run.
///
/// Each migration's SQL is complete on its own: it creates what it needs
/// first (the PostgreSQL schema, the `machine_migrations` table, both `IF NOT
/// EXISTS`) and records its version in `machine_migrations` last, which is
/// how the store, connecting with migrations off, knows the schema is
/// current. Run each once, in `version` order, each in one transaction (as
/// `sqlx::migrate` does).
///
/// Applied by the store itself (on connect, or by `migrate()`), SQLite's
/// migrations first look for rows they cannot carry over and refuse them
/// with [`StoreError::Corrupt`](crate::StoreError::Corrupt) naming the row;
/// run yourself, such a row fails the migration with the database's
/// constraint error instead, and the transaction leaves nothing changed.
///
/// ```
/// # #[cfg(feature = "postgres")] {
/// use machine_core::store::Postgres;
///
/// for migration in Postgres::options().schema("orders").migrations()? {
///     // e.g. write `{version:04}_machine_core.sql` files for your migration tool
///     assert!(migration.sql.contains("orders.machine_migrations"));
///     println!("{:04}_machine_core.sql: {} bytes", migration.version, migration.sql.len());
/// }
/// # }
/// # Ok::<(), machine_core::StoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The schema version this migration brings the database to (1, 2, …).
    pub version: u32,
    /// The statements, `;`-separated, to run in one transaction.
    pub sql: String,
}
