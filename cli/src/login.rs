//! `ota login` and `ota logout`: an API key stored for one server.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::client::Client;
use crate::config::{parse_server, ConfigFile, Credentials, Login};
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The server's base URL, e.g. https://ota.example.com.
    #[arg(long, env = "OTA_SERVER", value_name = "URL")]
    pub server: String,
}

/// Reads the key (OTA_API_KEY, else one line of stdin, so it never shows in
/// `ps` or the shell history), checks it against the server, then stores it.
pub async fn login(args: LoginArgs) -> Result<ExitCode> {
    let server = parse_server(&args.server)?;
    let key = match std::env::var("OTA_API_KEY").ok().filter(|k| !k.trim().is_empty()) {
        Some(key) => key.trim().to_owned(),
        None => read_key()?,
    };
    let client = Client::new(Credentials { server: server.clone(), token: key.clone() })?;
    // Any role may read the catalog: a key that can do that is a key the server takes.
    client.get(&["firmware"], &[("page_size", "1".to_owned())]).await.map_err(|e| match e {
        CliError::Api(failure) if failure.status == 401 => {
            CliError::invalid(format!("the server refused this key, nothing was stored: {failure}"))
        }
        other => other,
    })?;
    let file = ConfigFile::locate()?;
    let login = Login { server: server.as_str().trim_end_matches('/').to_owned(), api_key: key };
    file.save(&login)?;
    output::emit(&format!("logged in to {}; the key is stored in {}", login.server, file.path.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn logout() -> Result<ExitCode> {
    let file = ConfigFile::locate()?;
    let text = match file.remove()? {
        true => format!("removed the stored login {}", file.path.display()),
        false => "no stored login".to_owned(),
    };
    output::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn read_key() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("API key: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|source| CliError::File {
        what: "reading",
        path: "stdin".into(),
        source,
    })?;
    let key = line.trim();
    if key.is_empty() {
        return Err(CliError::invalid("no API key: give it on stdin or in OTA_API_KEY"));
    }
    Ok(key.to_owned())
}
