//! The least-privileged role `ota serve` connects as: it reads and appends events
//! but can never change or remove one, so a stolen server credential cannot
//! rewrite history (the hash chain and external checkpoints then tell the rest).

use sqlx::PgPool;

use crate::SchemaError;

/// The role `scripts/run.sh` and the tests run the server as.
pub const DEFAULT_SERVER_ROLE: &str = "ota_server";

/// Creates `role` if it does not exist (LOGIN, no password: give it one, or
/// another way to log in, with `ALTER ROLE`) and grants it what the server
/// needs in the current database and schema: every table's rows, except that
/// `events` and `event_chain` may only be read and appended to, and the schema
/// version may only be read. Idempotent, and safe to run for several databases
/// of one cluster at once (role creation is cluster-wide). Run it as the owner
/// of the schema, after migrating (`ota migrate --server-role`).
pub async fn grant_server_role(pool: &PgPool, role: &str) -> Result<(), SchemaError> {
    let valid = !role.is_empty()
        && role.len() <= 63
        && !role.starts_with(|c: char| c.is_ascii_digit())
        && role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(SchemaError::BadRole(role.to_owned()));
    }
    // Validated above: a plain lower-case identifier, so quoting it is enough.
    let role = format!("\"{role}\"");
    for statement in grants(&role) {
        sqlx::query(&statement).execute(pool).await.map_err(SchemaError::Grant)?;
    }
    Ok(())
}

fn grants(role: &str) -> Vec<String> {
    let tables = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE";
    let sequences = "USAGE, SELECT, UPDATE";
    vec![
        // Two sessions creating it at once: the loser sees a unique violation.
        format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ),
        format!(
            "DO $$ BEGIN
               EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO {role}', current_database());
               EXECUTE format('GRANT USAGE ON SCHEMA %I TO {role}', current_schema());
               EXECUTE format('GRANT {tables} ON ALL TABLES IN SCHEMA %I TO {role}', current_schema());
               EXECUTE format('GRANT {sequences} ON ALL SEQUENCES IN SCHEMA %I TO {role}', current_schema());
               EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT {tables} ON TABLES TO {role}',
                              current_schema());
               EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT {sequences} ON SEQUENCES TO {role}',
                              current_schema());
             END $$"
        ),
        format!("REVOKE UPDATE, DELETE, TRUNCATE ON events, event_chain FROM {role}"),
        format!("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM {role}"),
        format!("GRANT EXECUTE ON FUNCTION take_out_own_events(text, text[], bigint[]) TO {role}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::grant_server_role;
    use crate::SchemaError;

    #[tokio::test]
    async fn a_role_name_that_is_not_a_plain_identifier_is_refused_before_any_sql() {
        let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("lazy pool");
        for bad in ["", "Ota", "1ota", "ota; DROP TABLE events", "ota\"x", &"a".repeat(64)] {
            let refused = grant_server_role(&pool, bad).await;
            assert!(matches!(refused, Err(SchemaError::BadRole(_))), "{bad:?}: {refused:?}");
        }
    }
}
