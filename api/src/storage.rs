//! Firmware binaries in object storage: streamed in while hashing, stored by
//! content (`sha256/<hex>`), read back by range.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use md5::Md5;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The storage has no room left (a full disk or an exhausted quota).
    #[error("object store is full: {0}")]
    Full(object_store::Error),
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("upload body: {0}")]
    Body(String),
}

/// Hashes and size of a staged upload.
#[derive(Debug, Clone)]
pub struct Staged {
    pub path: Path,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
}

/// What a garbage collection deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Staged uploads a crash or a failed request left behind.
    pub staged: u64,
    /// Stored binaries no firmware refers to (its event never committed).
    pub unreferenced: u64,
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// For stores that can hand out pre-signed URLs (S3), with the key prefix they sign under.
    #[cfg_attr(not(feature = "cloud"), allow(dead_code))]
    signer: Option<Presigner>,
}

#[cfg(feature = "cloud")]
type Presigner = (Arc<dyn object_store::signer::Signer>, Path);
/// Without cloud stores nothing can pre-sign.
#[cfg(not(feature = "cloud"))]
type Presigner = std::convert::Infallible;

impl Blobs {
    /// A directory path (created if missing) or an object_store URL (`s3://bucket/prefix`, ...).
    pub fn open(location: &str) -> Result<Self, BlobError> {
        #[cfg(feature = "cloud")]
        if let Ok(url) =
            Url::parse(location).and_then(|u| if u.scheme() == "s3" { Ok(u) } else { Err(url::ParseError::EmptyHost) })
        {
            return Self::s3(&url);
        }
        let store: Arc<dyn ObjectStore> = match Url::parse(location) {
            Ok(url) if url.scheme() != "file" && url.scheme().len() > 1 => {
                let (store, prefix) = object_store::parse_url_opts(&url, std::env::vars())
                    .map_err(|e| BlobError::Config(format!("{location}: {e}")))?;
                if prefix.as_ref().is_empty() {
                    Arc::from(store)
                } else {
                    Arc::new(PrefixStore::new(store, prefix))
                }
            }
            Ok(url) => Self::local(url.path())?,
            Err(_) => Self::local(location)?,
        };
        Ok(Self { store, signer: None })
    }

    /// S3 (and compatible stores), configured from `AWS_*` variables; it can pre-sign downloads.
    #[cfg(feature = "cloud")]
    fn s3(url: &Url) -> Result<Self, BlobError> {
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .build()
            .map_err(|e| BlobError::Config(format!("{url}: {e}")))?;
        let s3 = Arc::new(s3);
        let prefix = Path::from(url.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match prefix.as_ref().is_empty() {
            true => s3.clone(),
            false => Arc::new(PrefixStore::new(s3.clone(), prefix.clone())),
        };
        Ok(Self { store, signer: Some((s3, prefix)) })
    }

    /// A URL the store itself serves `key` at for `ttl`, when the store can sign one.
    pub async fn presigned(&self, key: &str, ttl: std::time::Duration) -> Result<Option<Url>, BlobError> {
        #[cfg(feature = "cloud")]
        if let Some((signer, prefix)) = &self.signer {
            let full: Path = prefix.parts().chain(Path::from(key).parts()).collect();
            return Ok(Some(signer.signed_url(http::Method::GET, &full, ttl).await?));
        }
        let _ = (key, ttl);
        Ok(None)
    }

    fn local(dir: &str) -> Result<Arc<dyn ObjectStore>, BlobError> {
        std::fs::create_dir_all(dir).map_err(|e| BlobError::Config(format!("{dir}: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| BlobError::Config(format!("{dir}: {e}")))?;
        Ok(Arc::new(store))
    }

    pub fn in_memory() -> Self {
        Self { store: Arc::new(object_store::memory::InMemory::new()), signer: None }
    }

    /// Streams chunks into a staging object while hashing; nothing is held whole in memory.
    pub async fn stage<S, E>(&self, mut chunks: S, limit: u64) -> Result<Staged, BlobError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BlobError>,
    {
        use futures::StreamExt;
        let path = Path::from(format!("staging/{}", Uuid::new_v4()));
        let upload = self.store.put_multipart(&path).await.map_err(classify)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let (mut sha256, mut sha1, mut md5) = (Sha256::new(), Sha1::new(), Md5::new());
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                let _ = writer.abort().await;
                return Err(BlobError::TooLarge { limit });
            }
            sha256.update(&chunk);
            sha1.update(&chunk);
            md5.update(&chunk);
            // A failed part leaves the multipart upload open on S3 (billed, invisible) unless aborted.
            if let Err(e) = writer.wait_for_capacity(4).await {
                let _ = writer.abort().await;
                return Err(classify(e));
            }
            writer.put(chunk);
        }
        // A failed completion aborts the upload itself; if even the abort fails,
        // the staging object is collected later, and S3 buckets should also expire
        // incomplete multipart uploads (docs/operations.md).
        writer.finish().await.map_err(classify)?;
        Ok(Staged {
            path,
            size,
            sha256: hex::encode(sha256.finalize()),
            sha1: hex::encode(sha1.finalize()),
            md5: hex::encode(md5.finalize()),
        })
    }

    /// Moves a staged upload to its content address and returns that key. Over
    /// the same bytes if they are stored already: the object becomes young, so
    /// garbage collection, which spares young objects, cannot take it before the
    /// firmware that now uses it is stored.
    pub async fn promote(&self, staged: &Staged) -> Result<String, BlobError> {
        let key = format!("sha256/{}", staged.sha256);
        self.store.rename(&staged.path, &Path::from(key.as_str())).await?;
        Ok(key)
    }

    /// Deletes staged uploads and content-addressed objects that no firmware
    /// references, once older than `grace` (an upload in progress, or one whose
    /// firmware is being stored, is younger). Returns how many of each went.
    pub async fn collect_garbage(
        &self,
        referenced: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> Result<Collected, BlobError> {
        use futures::TryStreamExt;
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::days(1));
        let mut collected = Collected::default();
        for prefix in ["staging", "sha256"] {
            let objects: Vec<_> = self.store.list(Some(&Path::from(prefix))).try_collect().await?;
            for object in objects.into_iter().filter(|o| o.last_modified < cutoff) {
                let key = object.location.to_string();
                if prefix == "sha256" && referenced.contains(&key) {
                    continue;
                }
                match self.store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => match prefix {
                        "staging" => collected.staged += 1,
                        _ => collected.unreferenced += 1,
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(collected)
    }

    pub async fn discard(&self, staged: &Staged) {
        if let Err(e) = self.store.delete(&staged.path).await {
            tracing::warn!(path = %staged.path, error = %e, "could not delete staged upload");
        }
    }

    /// Reads `range` (or everything) of a stored object as a stream.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>, BlobError> {
        let options = GetOptions { range: range.map(GetRange::from), ..Default::default() };
        let result = self.store.get_opts(&Path::from(key), options).await?;
        Ok(result.into_stream())
    }

    /// Writes `bytes` at `key` unless something is there already (then `false`,
    /// and what is there stays): for records that must never be overwritten.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<bool, BlobError> {
        let create = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
        match self.store.put_opts(&Path::from(key), bytes.into(), create).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    /// Checks the store answers (for health reports).
    pub async fn probe(&self) -> Result<(), BlobError> {
        match self.store.head(&Path::from("health-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A store error, told apart when it means the storage is full: that needs an
/// operator (more room), not a retry.
fn classify(e: object_store::Error) -> BlobError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            // ENOSPC and EDQUOT.
            if io.kind() == std::io::ErrorKind::StorageFull || matches!(io.raw_os_error(), Some(28 | 122)) {
                return BlobError::Full(e);
            }
        }
        source = error.source();
    }
    BlobError::Store(e)
}
