//! `ota firmware upload|list|show`: the server's firmware catalog.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{CliError, Result};
use crate::output::{self, print};
use crate::resources::{Firmware, Page};
use crate::{Paging, Remote};

#[derive(Debug, clap::Subcommand)]
pub enum FirmwareCommand {
    /// Upload an image; its SHA-256 is computed here and checked by the server.
    Upload(Upload),
    /// List the catalog, newest first.
    List {
        /// Only images for this device model.
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// One image: its hashes, status and signature.
    Show {
        id: Uuid,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, clap::Args)]
pub struct Upload {
    /// The image file.
    pub file: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub version: String,
    #[arg(long = "model", value_name = "DEVICE_MODEL")]
    pub device_model: String,
    /// Hardware versions it fits, comma-separated (none: every one of the model).
    #[arg(long = "hardware-versions", value_delimiter = ',')]
    pub hardware_versions: Vec<String>,
    #[arg(long, conflicts_with = "release_notes_file")]
    pub release_notes: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub release_notes_file: Option<PathBuf>,
    /// The signed release envelope (`ota firmware sign`'s output).
    #[arg(long, value_name = "FILE")]
    pub release: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(command: FirmwareCommand) -> Result<ExitCode> {
    match command {
        FirmwareCommand::Upload(upload) => self::upload(upload).await,
        FirmwareCommand::List { model, paging, remote } => {
            let client = remote.connect()?;
            let mut query = paging.query();
            query.extend(model.map(|m| ("device_model", m)));
            let page = client.get(&["firmware"], &query).await?;
            print(remote.format(), client.server(), page, |page: Page<Firmware>| Ok(list_table(&page)))
        }
        FirmwareCommand::Show { id, remote } => {
            let client = remote.connect()?;
            let firmware = client.get(&["firmware", &id.to_string()], &[]).await?;
            print(remote.format(), client.server(), firmware, |f: Firmware| Ok(output::trimmed(&fields(&f))))
        }
    }
}

async fn upload(upload: Upload) -> Result<ExitCode> {
    let client = upload.remote.connect()?;
    let metadata = metadata(&upload)?;
    let answer = client.upload_firmware(&metadata, &upload.file).await?;
    let format = upload.remote.format();
    let repeated = answer.status == 200;
    print(format, client.server(), answer.body, |f: Firmware| {
        let table = output::trimmed(&fields(&f));
        Ok(if repeated { format!("{table}\n(already stored with these bytes: nothing changed)") } else { table })
    })
}

/// The upload's `metadata` part; the checksum lets the server refuse bytes changed on the way.
fn metadata(upload: &Upload) -> Result<Value> {
    let release_notes = match &upload.release_notes_file {
        Some(path) => Some(read_text(path)?),
        None => upload.release_notes.clone(),
    };
    let release = match &upload.release {
        Some(path) => Some(
            serde_json::from_str::<Value>(&read_text(path)?)
                .map_err(|e| CliError::invalid(format!("{} is not a release envelope: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut metadata = json!({
        "name": upload.name,
        "version": upload.version,
        "device_model": upload.device_model,
        "hardware_versions": upload.hardware_versions,
        "checksum_sha256": sha256_of(&upload.file)?,
    });
    if let Some(notes) = release_notes {
        metadata["release_notes"] = Value::String(notes);
    }
    if let Some(release) = release {
        metadata["release"] = release;
    }
    Ok(metadata)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CliError::File { what: "reading", path: path.to_owned(), source })
}

/// The file's SHA-256 (hex), read in blocks.
pub fn sha256_of(path: &Path) -> Result<String> {
    let reading = |source| CliError::File { what: "reading", path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(reading)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut block).map_err(reading)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn list_table(page: &Page<Firmware>) -> String {
    let mut table = output::table(&["ID", "NAME", "VERSION", "MODEL", "SIZE", "STATUS", "CREATED"]);
    for f in &page.items {
        table.add_row(vec![
            f.id.to_string(),
            f.name.clone(),
            f.version.clone(),
            f.device_model.clone(),
            output::bytes(f.size),
            f.status.as_str().to_owned(),
            output::when(Some(f.created_at)),
        ]);
    }
    output::with_footer(&table, &page.footer())
}

fn fields(f: &Firmware) -> comfy_table::Table {
    let signature = match &f.signature {
        ota_domain::signature::SignatureCheck::Unsigned => "unsigned".to_owned(),
        ota_domain::signature::SignatureCheck::Verified { key_id, .. } => format!("verified ({key_id})"),
        ota_domain::signature::SignatureCheck::Invalid { reason, .. } => format!("invalid: {reason}"),
    };
    let hardware = if f.hardware_versions.is_empty() { "any".to_owned() } else { f.hardware_versions.join(", ") };
    output::fields(vec![
        ("id", f.id.to_string()),
        ("name", f.name.clone()),
        ("version", f.version.clone()),
        ("model", f.device_model.clone()),
        ("hardware", hardware),
        ("status", f.status.as_str().to_owned()),
        ("file", f.filename.clone()),
        ("size", format!("{} ({} bytes)", output::bytes(f.size), f.size)),
        ("sha256", f.sha256.clone()),
        ("sha1", f.sha1.clone()),
        ("md5", f.md5.clone()),
        ("signature", signature),
        ("notes", output::or_dash(f.release_notes.as_deref())),
        ("created", format!("{} by {}", output::when(Some(f.created_at)), output::or_dash(f.created_by.as_deref()))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_the_files_sha256() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("image.bin");
        std::fs::write(&path, b"abc").expect("written");
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_of(&path).expect("hashed"), want);
    }
}
