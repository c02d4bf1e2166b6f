//! The operator CLI: `ota login`, and `ota firmware|campaign|device ...` against
//! a running server's `/api/v1`, wired into the `ota` binary's clap tree.
//!
//! Each command module holds a clap `Subcommand` enum and a `run` that talks to
//! the server through [`client::Client`] and prints a table for people or, with
//! `--json`, the server's answer for scripts. It holds no rules of the
//! orchestrator: the server decides; the CLI asks and shows. Errors are
//! [`CliError`]s whose message carries the server's code and message; nothing a
//! user or the network sends can make it panic.
//!
//! The server is `--server URL` (or `OTA_SERVER`), else the one of `ota login`;
//! the bearer token is `OTA_TOKEN` or `OTA_API_KEY` (a JWT or an API key), else
//! the key `ota login` stored, which is only ever sent to the server it was
//! stored for.

pub mod campaign;
pub mod client;
pub mod config;
pub mod device;
pub mod error;
pub mod firmware;
pub mod login;
pub mod output;
pub mod resources;
pub mod watch;

pub use error::{CliError, Result};

use client::Client;
use config::{ConfigFile, Credentials};
use output::Format;

/// Where a command sends its request and how it prints the answer; every
/// command that talks to a server takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The server's base URL (default: the one of `ota login`).
    #[arg(long, env = "OTA_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Remote {
    /// A client for the chosen server with the chosen token.
    pub fn connect(&self) -> Result<Client> {
        let env_token = ["OTA_TOKEN", "OTA_API_KEY"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|t| !t.trim().is_empty()));
        let server = self.server.as_deref().filter(|s| !s.trim().is_empty());
        // With both given, a stored login (even an unreadable one) plays no part.
        let stored = match (server, &env_token) {
            (Some(_), Some(_)) => None,
            _ => ConfigFile::locate()?.load()?,
        };
        Client::new(Credentials::resolve(server, env_token, stored)?)
    }

    pub fn format(&self) -> Format {
        Format::of(self.json)
    }
}

/// Paging of a list command.
#[derive(Debug, Clone, clap::Args)]
pub struct Paging {
    /// The page, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Items a page (1 to 500).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
}

impl Paging {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        vec![("page", self.page.to_string()), ("page_size", self.page_size.to_string())]
    }
}

/// A command's end as the process's exit: its error, with its causes, on stderr.
pub fn finish(result: Result<std::process::ExitCode>) -> std::process::ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(inner) = cause {
                message.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            eprintln!("error: {message}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
