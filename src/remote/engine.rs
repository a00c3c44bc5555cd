//! The object-storage engine behind a remote: the `object_store` crate (S3
//! and S3-compatible servers, local folders), driven by a tokio runtime
//! that lives and dies inside this module. Every method is synchronous, so
//! the rest of the library stays synchronous.
//!
//! Objects are named relative to the remote's prefix. Uploads live in
//! [`crate::remote::upload`]. Transient errors are retried with backoff by
//! the engine.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::error::{Error, Result};
use crate::remote::spec::RemoteSpec;

/// An open remote.
pub struct Engine {
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) store: Arc<dyn ObjectStore>,
    /// The same store's multipart calls, where uploads have ids that a
    /// later push can abort (S3); `None` for a folder.
    pub(super) multipart: Option<Arc<dyn MultipartStore>>,
    prefix: ObjectPath,
    /// For a `file://` remote, its folder (emptied folders are removed).
    pub(super) local_root: Option<std::path::PathBuf>,
    /// The remote's name, for messages.
    pub name: String,
}

/// An object listed on the remote: its name below the prefix and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Name relative to the remote's prefix.
    pub name: String,
    /// Stored size.
    pub bytes: u64,
}

impl Engine {
    /// Opens the remote `spec` describes; credentials come from the
    /// environment only.
    pub fn open(spec: &RemoteSpec) -> Result<Engine> {
        let fail = |reason: String| Error::Remote {
            remote: spec.name.clone(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the network runtime: {e}")))?;
        let (scheme, rest) = spec
            .url
            .split_once("://")
            .ok_or_else(|| fail(format!("url {:?} is not a URL", spec.url)))?;
        let mut local_root = None;
        let mut multipart: Option<Arc<dyn MultipartStore>> = None;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match scheme {
            "s3" => {
                let (store, prefix) = s3_store(spec, rest)?;
                multipart = Some(store.clone());
                (store, prefix)
            }
            "file" => {
                let root = std::path::Path::new(rest);
                if !root.is_absolute() {
                    return Err(fail(
                        "a file:// url needs an absolute path (file:///path)".into(),
                    ));
                }
                crate::fsutil::create_private_dir_all(root)?;
                local_root = Some(root.to_path_buf());
                let store = object_store::local::LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| fail(engine_message(&e)))?;
                (Arc::new(store), String::new())
            }
            other => {
                return Err(fail(format!(
                    "URL scheme {other}:// is not supported by this build"
                )))
            }
        };
        let prefix = ObjectPath::parse(prefix.trim_matches('/'))
            .map_err(|e| fail(format!("bad prefix in url: {e}")))?;
        Ok(Engine {
            runtime,
            store,
            multipart,
            prefix,
            local_root,
            name: spec.name.clone(),
        })
    }

    /// The full path of `rel` below the prefix.
    pub(super) fn path(&self, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.child(part))
    }

    /// An error of this remote.
    pub(super) fn fail(&self, what: &str, e: &object_store::Error) -> Error {
        Error::Remote {
            remote: self.name.clone(),
            reason: format!("{what}: {}", engine_message(e)),
        }
    }

    /// Stores `bytes` as object `rel`.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(rel);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.fail(&format!("could not write {rel}"), &e))
    }

    /// The bytes of object `rel`, or `None` when there is no such object.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(rel);
        let got = self.runtime.block_on(async {
            let result = self.store.get(&path).await?;
            result.bytes().await
        });
        match got {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(&format!("could not read {rel}"), &e)),
        }
    }

    /// Streams object `rel` into `sink`; the bytes read.
    pub fn stream(
        &self,
        rel: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64> {
        let path = self.path(rel);
        let mut total = 0u64;
        let streamed: std::result::Result<(), StreamFailure> = self.runtime.block_on(async {
            let result = self.store.get(&path).await.map_err(StreamFailure::Remote)?;
            let mut chunks = result.into_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(StreamFailure::Remote)?;
                total += chunk.len() as u64;
                sink(&chunk).map_err(StreamFailure::Local)?;
            }
            Ok(())
        });
        match streamed {
            Ok(()) => Ok(total),
            Err(StreamFailure::Remote(e)) => Err(self.fail(&format!("could not read {rel}"), &e)),
            Err(StreamFailure::Local(e)) => Err(Error::Remote {
                remote: self.name.clone(),
                reason: format!("{rel}: {e}"),
            }),
        }
    }

    /// Object `rel` as a reader, fetched chunk by chunk as it is read;
    /// `None` when there is no such object.
    pub fn reader(&self, rel: &str) -> Result<Option<ObjectReader<'_>>> {
        let path = self.path(rel);
        match self.runtime.block_on(self.store.get(&path)) {
            Ok(got) => Ok(Some(ObjectReader {
                engine: self,
                rel: rel.to_string(),
                chunks: got.into_stream(),
                chunk: bytes::Bytes::new(),
                failed: None,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(&format!("could not read {rel}"), &e)),
        }
    }

    /// The folders right below the prefix (one per bundle).
    pub fn folders(&self) -> Result<Vec<String>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(prefix))
            .map_err(|e| self.fail("could not list", &e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Every object below folder `dir`, with its size, names relative to the prefix.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let path = self.path(dir);
        let prefix_len = self.prefix.as_ref().len();
        let listed: std::result::Result<Vec<_>, _> = self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&path));
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                let full = meta.location.as_ref();
                let name = full[prefix_len..].trim_start_matches('/').to_string();
                out.push(Listed {
                    name,
                    bytes: meta.size,
                });
            }
            Ok(out)
        });
        listed.map_err(|e: object_store::Error| self.fail(&format!("could not list {dir}"), &e))
    }

    /// Copies object `from` to `to` on the server, without moving its bytes here.
    pub fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (from_path, to_path) = (self.path(from), self.path(to));
        self.runtime
            .block_on(self.store.copy(&from_path, &to_path))
            .map_err(|e| self.fail(&format!("could not copy {from} to {to}"), &e))
    }

    /// Deletes object `rel` (no error when it is already gone).
    pub fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.fail(&format!("could not delete {rel}"), &e)),
        }
        // A folder has no empty directories to leave behind, unlike a bucket.
        if let Some(root) = &self.local_root {
            let mut dir = root.join(path.as_ref());
            while dir.pop() && dir.starts_with(root) && dir != *root {
                if std::fs::remove_dir(&dir).is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// An object being downloaded, as a [`Read`](std::io::Read). A failure of
/// the remote reads as an I/O error; [`ObjectReader::failure`] then tells it
/// apart from a failure of whatever consumes the bytes.
pub struct ObjectReader<'a> {
    engine: &'a Engine,
    rel: String,
    chunks: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
    failed: Option<object_store::Error>,
}

impl ObjectReader<'_> {
    /// The remote's error, when reading stopped because of one.
    pub fn failure(&mut self) -> Option<Error> {
        let e = self.failed.take()?;
        Some(
            self.engine
                .fail(&format!("could not read {}", self.rel), &e),
        )
    }
}

impl std::io::Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.engine.runtime.block_on(self.chunks.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    let text = e.to_string();
                    self.failed = Some(e);
                    return Err(std::io::Error::other(text));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// Why a download stopped.
enum StreamFailure {
    Remote(object_store::Error),
    Local(std::io::Error),
}

/// The S3 store of `spec`, whose url is `s3://` + `rest`, and its prefix.
fn s3_store(spec: &RemoteSpec, rest: &str) -> Result<(Arc<object_store::aws::AmazonS3>, String)> {
    let fail = |reason: String| Error::Remote {
        remote: spec.name.clone(),
        reason,
    };
    let credentials = crate::remote::credentials::find(&spec.name)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(fail("the url names no bucket (s3://bucket/prefix)".into()));
    }
    let region = spec
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(retry_config())
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(300)),
        );
    if let crate::remote::credentials::Credentials::Profile(keys) = credentials {
        builder = builder
            .with_access_key_id(keys.access_key_id)
            .with_secret_access_key(keys.secret_access_key);
        if let Some(token) = keys.session_token {
            builder = builder.with_token(token);
        }
    }
    if let Some(endpoint) = &spec.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    let store = builder.build().map_err(|e| fail(engine_message(&e)))?;
    Ok((Arc::new(store), prefix.to_string()))
}

/// Retries of transient errors: backoff, at most `BUNDLE_REMOTE_RETRY_SECS`
/// seconds in all (default 120).
fn retry_config() -> object_store::RetryConfig {
    let secs = std::env::var("BUNDLE_REMOTE_RETRY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    object_store::RetryConfig {
        max_retries: 8,
        retry_timeout: Duration::from_secs(secs),
        ..object_store::RetryConfig::default()
    }
}

/// The engine's message, one line.
fn engine_message(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}
