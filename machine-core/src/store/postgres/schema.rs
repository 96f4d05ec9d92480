//! The PostgreSQL schema's versioned migrations, applied on connect in one
//! transaction under an advisory lock (see `Postgres::migrate`).

/// The schema's migrations, in order. Text columns compared or sorted by the
/// store use the "C" collation, so ids order by bytes as in every other store.
#[expect(clippy::too_many_lines, reason = "the migrations' SQL, one step after another, read top to bottom")]
pub(super) fn migrations(schema: &str) -> [(i32, String); 7] {
    [
        (
            1,
            format!(
                "CREATE TABLE {schema}.machine_records (
                machine text COLLATE \"C\" NOT NULL,
                id text COLLATE \"C\" NOT NULL,
                version bigint NOT NULL CHECK (version > 0),
                kind text COLLATE \"C\" NOT NULL,
                state jsonb NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (machine, id)
            );
            CREATE INDEX machine_records_kind ON {schema}.machine_records (machine, kind, id);
            CREATE TABLE {schema}.machine_history (
                seq bigserial PRIMARY KEY,
                tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
                machine text COLLATE \"C\" NOT NULL,
                id text COLLATE \"C\" NOT NULL,
                version bigint NOT NULL,
                command jsonb NOT NULL,
                kind text COLLATE \"C\" NOT NULL,
                state jsonb NOT NULL,
                at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (machine, id, version)
            );
            CREATE INDEX machine_history_feed ON {schema}.machine_history (tx, seq);"
            ),
        ),
        // A constant default is stored once in the catalog (no table
        // rewrite), and rows from before origins existed were all commands.
        (
            2,
            format!(
                "ALTER TABLE {schema}.machine_history ADD COLUMN origin text COLLATE \"C\" NOT NULL DEFAULT 'command'"
            ),
        ),
        // Idempotency keys, written in the commits they name. Times are
        // the runner's milliseconds, as it judges expiry by its own clock.
        (
            3,
            format!(
                "CREATE TABLE {schema}.machine_keys (
                machine text COLLATE \"C\" NOT NULL,
                id text COLLATE \"C\" NOT NULL,
                key text COLLATE \"C\" NOT NULL,
                fingerprint bigint NOT NULL,
                version bigint NOT NULL,
                kind text COLLATE \"C\",
                state jsonb,
                at bigint NOT NULL,
                expires_at bigint NOT NULL,
                PRIMARY KEY (machine, id, key)
            );
            CREATE INDEX machine_keys_expiry ON {schema}.machine_keys (expires_at);"
            ),
        ),
        // The machine's schema version that wrote each state and command
        // (`Machine::SCHEMA`); rows from before it was stored were all
        // written at version 1. Constant defaults: no table rewrite.
        (
            4,
            format!(
                "ALTER TABLE {schema}.machine_records
                     ADD COLUMN schema_version integer NOT NULL DEFAULT 1 CHECK (schema_version > 0);
                 ALTER TABLE {schema}.machine_history
                     ADD COLUMN schema_version integer NOT NULL DEFAULT 1 CHECK (schema_version > 0);"
            ),
        ),
        // Retention. A removed record's history leaves `machine_history`
        // (so the id can start afresh under the unique `(machine, id,
        // version)`, which stays as it is) for `machine_removed`, keeping
        // its transaction ids and sequence numbers, with the removal entry:
        // the feed reads both tables in one `(tx, seq)` order, so a consumer
        // behind still sees every change. `removal` is the removal entry's
        // `seq`, telling one removed incarnation of an id from the next.
        // `machine_pruned` holds the last feed position pruned, so a cursor
        // behind it is refused instead of silently skipping.
        (
            5,
            format!(
                "CREATE TABLE {schema}.machine_removed (
                seq bigint PRIMARY KEY,
                tx xid8 NOT NULL,
                removal bigint NOT NULL,
                machine text COLLATE \"C\" NOT NULL,
                id text COLLATE \"C\" NOT NULL,
                version bigint NOT NULL,
                command jsonb NOT NULL,
                origin text COLLATE \"C\" NOT NULL,
                kind text COLLATE \"C\" NOT NULL,
                state jsonb NOT NULL,
                at timestamptz NOT NULL,
                schema_version integer NOT NULL CHECK (schema_version > 0)
            );
            CREATE INDEX machine_removed_feed ON {schema}.machine_removed (tx, seq);
            CREATE INDEX machine_removed_entry ON {schema}.machine_removed (removal, version);
            CREATE TABLE {schema}.machine_pruned (
                one boolean PRIMARY KEY DEFAULT true CHECK (one),
                tx xid8 NOT NULL,
                seq bigint NOT NULL
            );
            INSERT INTO {schema}.machine_pruned (tx, seq) VALUES ('0', 0);"
            ),
        ),
        // When each record's state is due (`State::due`), in the runner's
        // milliseconds, indexed for sweepers: partial, so records without a
        // timer cost the index nothing.
        (
            6,
            format!(
                "ALTER TABLE {schema}.machine_records ADD COLUMN due_at bigint;
                 CREATE INDEX machine_records_due ON {schema}.machine_records (machine, due_at, id)
                     WHERE due_at IS NOT NULL;"
            ),
        ),
        // Change-feed processors: a checkpoint and lease per name, compared
        // and set by version, and the entries their handlers parked.
        // Cursors are kept as their two integers, so dead letters sort in
        // feed order; times are the runner's milliseconds.
        (
            7,
            format!(
                "CREATE TABLE {schema}.machine_processors (
                    name text COLLATE \"C\" PRIMARY KEY,
                    cursor_tx bigint NOT NULL,
                    cursor_seq bigint NOT NULL,
                    owner text NOT NULL,
                    lease_until bigint NOT NULL,
                    version bigint NOT NULL CHECK (version > 0)
                 );
                 CREATE TABLE {schema}.machine_dead_letters (
                    processor text COLLATE \"C\" NOT NULL,
                    cursor_tx bigint NOT NULL,
                    cursor_seq bigint NOT NULL,
                    machine text NOT NULL,
                    id text NOT NULL,
                    version bigint NOT NULL,
                    error text NOT NULL,
                    attempts bigint NOT NULL,
                    parked_at bigint NOT NULL,
                    PRIMARY KEY (processor, cursor_tx, cursor_seq)
                 );"
            ),
        ),
    ]
}
