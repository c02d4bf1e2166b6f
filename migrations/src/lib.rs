//! The database schema: numbered SQL migrations in `sql/`, and the code that
//! creates the database when it is missing and applies them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// Every migration, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./sql");

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot reach or create the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "migrations are pending and this role may not apply them ({0}); \
         run `ota migrate` with the schema owner's DATABASE_URL"
    )]
    NotOwner(String),
    #[error("{0:?} is not a role name: 1 to 63 of a-z, 0-9 and _, not starting with a digit")]
    BadRole(String),
    #[error("granting the server role: {0}")]
    Grant(#[source] sqlx::Error),
}

mod role;
pub use role::{grant_server_role, DEFAULT_SERVER_ROLE};

/// Creates the database if it does not exist yet (needs CREATEDB), then connects.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, SchemaError> {
    if !Postgres::database_exists(url).await.map_err(SchemaError::Connect)? {
        tracing::info!("creating database");
        if let Err(e) = Postgres::create_database(url).await {
            // Another instance may have created it in the meantime.
            if !Postgres::database_exists(url).await.map_err(SchemaError::Connect)? {
                return Err(SchemaError::Connect(e));
            }
        }
    }
    // Our tables start empty and grow fast. A generic plan cached by a pooled
    // connection while they were small (a sequential scan) would be kept long
    // after the table had grown, until autovacuum analysed it; measured in the
    // rollout benchmark, one projection lookup took 5 ms instead of 0.3 ms.
    // Planning each statement for its parameters costs less than that risk.
    //
    // Keepalives: the server notices a client host that vanished (no FIN, no RST)
    // within about 25 s and ends its sessions, releasing their locks, instead of
    // after the kernel's default of two hours.
    //
    // A transaction left open by a frozen process (SIGSTOP, a stuck VM) held its
    // row locks and, having written events, held the relay back: measured with
    // three instances, everything stopped for as long as it stayed frozen; and a
    // frozen leader's fenced write held its lease row, so the takeover waited
    // too. Ours never wait between statements (no network call inside), so one
    // idle for 5 s is ended: a takeover stays within the 6 s lease.
    let options = PgConnectOptions::from_str(url).map_err(SchemaError::Connect)?.options([
        ("plan_cache_mode", "force_custom_plan"),
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
        ("idle_in_transaction_session_timeout", "5s"),
    ]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(SchemaError::Connect)
}

/// Applies every pending migration; safe to call from several instances at once.
/// A schema that is up to date is only read, so a server connected as a role
/// that may not change the schema ([`grant_server_role`]) starts on it; with a
/// migration pending, that role is refused and told to let the owner migrate.
pub async fn migrate(pool: &PgPool) -> Result<(), SchemaError> {
    if up_to_date(pool).await.map_err(SchemaError::Connect)? {
        return Ok(());
    }
    // Asked before the migrator takes its lock: a failure inside it returns the
    // connection to the pool still holding that session lock, and an owner's
    // `ota migrate` would then wait for as long as this pool lives.
    let may_create: bool = sqlx::query_scalar("SELECT has_schema_privilege(current_schema(), 'CREATE')")
        .fetch_one(pool)
        .await
        .map_err(SchemaError::Connect)?;
    if !may_create {
        return Err(SchemaError::NotOwner("it may not create in the schema".into()));
    }
    match MIGRATOR.run(pool).await {
        Err(sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _))
            if is_permission_denied(&e) =>
        {
            Err(SchemaError::NotOwner(e.to_string()))
        }
        other => Ok(other?),
    }
}

/// Every migration applied, each with the checksum it has now.
async fn up_to_date(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(false);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success").fetch_all(pool).await?;
    let applied: std::collections::HashMap<i64, Vec<u8>> = applied.into_iter().collect();
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.get(&m.version).is_some_and(|sum| sum.as_slice() == &*m.checksum)))
}

fn is_permission_denied(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "42501")
}
