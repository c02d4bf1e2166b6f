//! Where `ota login` keeps the server URL and API key, and which server and
//! token a command uses.
//!
//! The login lives in `<config dir>/ota/config.json` (`$XDG_CONFIG_HOME/ota`, else
//! `~/.config/ota`, on Linux), readable by its owner alone: the file is created
//! 0600 and replaced atomically, and a file others can read is refused, as ssh
//! refuses a world-readable key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{CliError, NoToken, Result};

/// What `ota login` stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub server: String,
    pub api_key: String,
}

/// The login file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    /// The login file in the user's config directory.
    pub fn locate() -> Result<Self> {
        let dirs = directories::ProjectDirs::from("", "", "ota").ok_or(CliError::NoConfigDir)?;
        Ok(Self { path: dirs.config_dir().join("config.json") })
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The stored login, if any.
    pub fn load(&self) -> Result<Option<Login>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CliError::File { what: "reading", path: self.path.clone(), source }),
        };
        let mode = file
            .metadata()
            .map_err(|source| CliError::File { what: "reading", path: self.path.clone(), source })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            let reason =
                format!("others may read it (mode {:o}): chmod 600 it, or run `ota login` again", mode & 0o777);
            return Err(CliError::BadConfig { path: self.path.clone(), reason });
        }
        serde_json::from_reader(std::io::BufReader::new(file))
            .map(Some)
            .map_err(|e| CliError::BadConfig { path: self.path.clone(), reason: e.to_string() })
    }

    /// Stores a login in place of any other: written 0600 beside the file, then renamed
    /// over it, so a reader sees the old or the new login and never a partial one.
    pub fn save(&self, login: &Login) -> Result<()> {
        let writing = |source| CliError::File { what: "writing", path: self.path.clone(), source };
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(writing)?;
        }
        let staged = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        let text = serde_json::to_string_pretty(login).map_err(|e| CliError::invalid(e.to_string()))?;
        write_private(&staged, text.as_bytes()).map_err(writing)?;
        std::fs::rename(&staged, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&staged);
            writing(e)
        })
    }

    /// Forgets the login; false if there was none.
    pub fn remove(&self) -> Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CliError::File { what: "removing", path: self.path.clone(), source }),
        }
    }
}

/// Writes a new file only its owner can read (0600 from its creation on).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A server's base URL: http or https, without a trailing slash.
pub fn parse_server(raw: &str) -> Result<Url> {
    let bad = |reason: &str| CliError::BadServer { url: raw.to_owned(), reason: reason.to_owned() };
    let url = Url::parse(raw.trim()).map_err(|e| bad(&format!("{e} (write it as http://host:port)")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// servers"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment"));
    }
    Ok(url)
}

/// Two server URLs name the same server (trailing slashes aside).
fn same_server(a: &Url, b: &Url) -> bool {
    a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/')
}

/// The server a command talks to and the bearer token it sends.
#[derive(Clone)]
pub struct Credentials {
    pub server: Url,
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("server", &self.server.as_str()).field("token", &"[redacted]").finish()
    }
}

impl Credentials {
    /// `--server` (or OTA_SERVER), else the stored login's; the token from the
    /// environment, else the stored key, but only for the server it was stored for.
    pub fn resolve(server: Option<&str>, env_token: Option<String>, stored: Option<Login>) -> Result<Self> {
        let stored_server = stored.as_ref().and_then(|login| parse_server(&login.server).ok());
        let server = match server.filter(|s| !s.trim().is_empty()) {
            Some(raw) => parse_server(raw)?,
            None => stored_server.clone().ok_or(CliError::NoServer)?,
        };
        if let Some(token) = env_token.filter(|t| !t.trim().is_empty()) {
            return Ok(Self { server, token: token.trim().to_owned() });
        }
        match (stored, stored_server) {
            (Some(login), Some(at)) if same_server(&at, &server) => Ok(Self { server, token: login.api_key }),
            (_, other) => Err(CliError::NoToken(NoToken {
                server: server.as_str().trim_end_matches('/').to_owned(),
                stored_for: other.map(|u| u.as_str().trim_end_matches('/').to_owned()),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(server: &str) -> Login {
        Login { server: server.into(), api_key: "ota_k_secret".into() }
    }

    #[test]
    fn the_stored_login_is_written_for_its_owner_alone_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = ConfigFile::at(dir.path().join("ota").join("config.json"));
        assert_eq!(file.load().expect("no file yet"), None);
        file.save(&login("http://a:1")).expect("saved");
        file.save(&login("http://b:2")).expect("replaced");
        let mode = std::fs::metadata(&file.path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(file.load().expect("loaded"), Some(login("http://b:2")));
        let entries = std::fs::read_dir(dir.path().join("ota")).expect("dir").count();
        assert_eq!(entries, 1, "no staged file is left behind");
    }

    #[test]
    fn a_login_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = ConfigFile::at(dir.path().join("config.json"));
        file.save(&login("http://a:1")).expect("saved");
        std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(file.load(), Err(CliError::BadConfig { .. })));
    }

    #[test]
    fn a_token_from_the_environment_wins_over_the_stored_key() {
        let c = Credentials::resolve(None, Some("jwt".into()), Some(login("http://a:1"))).expect("resolved");
        assert_eq!((c.server.as_str(), c.token.as_str()), ("http://a:1/", "jwt"));
    }

    #[test]
    fn the_stored_key_goes_only_to_its_own_server() {
        let same = Credentials::resolve(Some("http://a:1/"), None, Some(login("http://a:1"))).expect("same server");
        assert_eq!(same.token, "ota_k_secret");
        let other = Credentials::resolve(Some("http://b:1"), None, Some(login("http://a:1")));
        assert!(matches!(other, Err(CliError::NoToken(NoToken { stored_for: Some(_), .. }))));
    }

    #[test]
    fn without_server_or_login_nothing_is_guessed() {
        assert!(matches!(Credentials::resolve(None, Some("t".into()), None), Err(CliError::NoServer)));
        assert!(matches!(Credentials::resolve(Some("http://a"), None, None), Err(CliError::NoToken(_))));
    }

    #[test]
    fn server_urls_are_http_or_https_with_a_host() {
        assert!(parse_server("https://ota.example.com/base").is_ok());
        assert!(parse_server("ota.example.com").is_err());
        assert!(parse_server("ftp://ota.example.com").is_err());
        assert!(parse_server("http://a/?x=1").is_err());
    }
}
