//! Configuration, from flags or environment variables (flags win).

use std::net::SocketAddr;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Postgres URL; the database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/ota")]
    pub database_url: String,

    /// Connections in the Postgres pool.
    #[arg(long, env = "OTA_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Prefix of every NATS stream, consumer and subject.
    #[arg(long, env = "OTA_NATS_PREFIX", default_value = "ota")]
    pub nats_prefix: String,

    /// Where firmware binaries live: a directory, or an object_store URL.
    #[arg(long, env = "OTA_STORAGE_URL", default_value = "./data/firmware")]
    pub storage_url: String,

    #[arg(long, env = "OTA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// HS256 secret for operator tokens (at least 32 bytes).
    #[arg(long, env = "OTA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Largest firmware image accepted, in bytes.
    #[arg(long, env = "OTA_MAX_FIRMWARE_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_firmware_bytes: u64,
}

impl Settings {
    /// Defaults for everything, as if no flag and no variable were given.
    pub fn defaults() -> Self {
        use clap::FromArgMatches;
        let cmd = <Self as Args>::augment_args(clap::Command::new("ota"));
        let matches = cmd.get_matches_from(["ota"]);
        // Defaults always parse; a failure here is a bug in the attributes above.
        Self::from_arg_matches(&matches).unwrap_or_else(|e| panic!("settings defaults: {e}"))
    }
}
