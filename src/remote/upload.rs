//! Uploading one object: compressed and hashed on the way
//! ([`crate::remote::pack`]), in one request when small, else in parts of
//! [`PART_BYTES`], `jobs` in flight.
//!
//! An interrupted multipart upload leaves parts on the server that nobody
//! sees and the provider bills. A failing upload aborts its own. For one
//! cut short by a kill, S3 uploads are announced first: a small marker
//! object `uploads/<object>` holds the upload id from before the first part
//! goes up until the upload is completed or aborted, and the next push
//! aborts every upload its markers name ([`Engine::abort_abandoned_uploads`]).
//! A folder remote stages an upload in a file beside its target instead;
//! the next push removes those files from unfinished bundles.

use std::io::Read;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::remote::engine::Engine;
use crate::remote::pack::{Packer, Uploaded, PART_BYTES};

/// The folder below the prefix holding one marker per multipart upload in progress.
pub const UPLOADS: &str = "uploads";

/// How much plaintext is read at a time.
const READ_BYTES: usize = 1024 * 1024;

/// What a marker object says: which upload of which object is in progress.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// The object, relative to the prefix.
    object: String,
    /// The server's id of the upload.
    upload_id: String,
}

/// A part's upload in flight.
type PartFuture = BoxFuture<'static, object_store::Result<PartId>>;

/// Where an object's parts go.
enum Sink {
    /// No part yet: the object may still go up in one request.
    Unstarted,
    /// An announced S3 multipart upload.
    Announced {
        store: Arc<dyn MultipartStore>,
        upload_id: String,
        in_flight: FuturesOrdered<PartFuture>,
        done: Vec<PartId>,
    },
    /// A folder remote's staged upload.
    Staged(WriteMultipart),
    /// Completed (nothing to abort).
    Finished,
}

/// One object's upload.
struct Parts<'a> {
    engine: &'a Engine,
    rel: &'a str,
    path: ObjectPath,
    jobs: usize,
    sink: Sink,
}

impl Parts<'_> {
    /// An error about this object.
    fn fail(&self, what: &str, e: &object_store::Error) -> Error {
        self.engine.fail(&format!("{what} {}", self.rel), e)
    }

    /// The marker object of this upload.
    fn marker(&self) -> ObjectPath {
        self.engine.path(&format!("{UPLOADS}/{}", self.rel))
    }

    /// Starts the multipart upload (announced by its marker on S3).
    async fn start(&mut self) -> Result<()> {
        let Some(store) = self.engine.multipart.clone() else {
            let upload = self.engine.store.put_multipart(&self.path).await;
            let upload = upload.map_err(|e| self.fail("could not start", &e))?;
            self.sink = Sink::Staged(WriteMultipart::new_with_chunk_size(upload, PART_BYTES));
            return Ok(());
        };
        let upload_id = store
            .create_multipart(&self.path)
            .await
            .map_err(|e| self.fail("could not start", &e))?;
        let marker = Marker {
            object: self.rel.to_string(),
            upload_id: upload_id.clone(),
        };
        let body = serde_json::to_vec(&marker).expect("a marker serializes");
        let announced = self
            .engine
            .store
            .put(&self.marker(), PutPayload::from(body))
            .await;
        if let Err(e) = announced {
            let _ = store.abort_multipart(&self.path, &upload_id).await;
            return Err(self.fail("could not announce the upload of", &e));
        }
        self.sink = Sink::Announced {
            store,
            upload_id,
            in_flight: FuturesOrdered::new(),
            done: Vec::new(),
        };
        Ok(())
    }

    /// Sends one part, waiting while `jobs` are in flight.
    async fn send(&mut self, part: Vec<u8>) -> Result<()> {
        if matches!(self.sink, Sink::Unstarted) {
            self.start().await?;
        }
        let jobs = self.jobs.max(1);
        let mut failed = None;
        match &mut self.sink {
            Sink::Announced {
                store,
                upload_id,
                in_flight,
                done,
            } => {
                let (store, path, id) = (store.clone(), self.path.clone(), upload_id.clone());
                let index = done.len() + in_flight.len();
                in_flight.push_back(Box::pin(async move {
                    store
                        .put_part(&path, &id, index, PutPayload::from(part))
                        .await
                }));
                while in_flight.len() >= jobs {
                    match in_flight.next().await.expect("parts are in flight") {
                        Ok(id) => done.push(id),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            Sink::Staged(writer) => match writer.wait_for_capacity(jobs).await {
                Ok(()) => writer.put(part.into()),
                Err(e) => failed = Some(e),
            },
            Sink::Unstarted | Sink::Finished => unreachable!("started above"),
        }
        match failed {
            Some(e) => Err(self.fail("could not upload", &e)),
            None => Ok(()),
        }
    }

    /// Sends the last bytes and completes the object.
    async fn finish(&mut self, rest: Vec<u8>) -> Result<()> {
        let finished = match std::mem::replace(&mut self.sink, Sink::Finished) {
            Sink::Unstarted => self
                .engine
                .store
                .put(&self.path, PutPayload::from(rest))
                .await
                .map(|_| ()),
            Sink::Staged(mut writer) => {
                writer.put(rest.into());
                writer.finish().await.map(|_| ())
            }
            announced @ Sink::Announced { .. } => {
                self.sink = announced;
                if !rest.is_empty() {
                    self.send(rest).await?;
                }
                return self.complete().await;
            }
            Sink::Finished => Ok(()),
        };
        finished.map_err(|e| self.fail("could not write", &e))
    }

    /// Waits for the parts in flight, completes the upload, removes its marker.
    async fn complete(&mut self) -> Result<()> {
        let Sink::Announced {
            store,
            upload_id,
            in_flight,
            done,
        } = &mut self.sink
        else {
            return Ok(());
        };
        let mut result = Ok(());
        while let Some(part) = in_flight.next().await {
            match part {
                Ok(id) => done.push(id),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            let parts = std::mem::take(done);
            result = store
                .complete_multipart(&self.path, upload_id, parts)
                .await
                .map(|_| ());
        }
        if let Err(e) = result {
            return Err(self.fail("could not write", &e));
        }
        self.sink = Sink::Finished;
        // A marker left by a failure here only makes the next push abort an
        // upload that no longer exists.
        let _ = self.engine.store.delete(&self.marker()).await;
        Ok(())
    }

    /// Aborts the upload after a failure (best effort: a marker whose
    /// abort failed stays, for the next push).
    async fn abort(&mut self) {
        match std::mem::replace(&mut self.sink, Sink::Finished) {
            Sink::Announced {
                store, upload_id, ..
            } => {
                if store.abort_multipart(&self.path, &upload_id).await.is_ok() {
                    let _ = self.engine.store.delete(&self.marker()).await;
                }
            }
            Sink::Staged(writer) => {
                let _ = writer.abort().await;
            }
            Sink::Unstarted | Sink::Finished => {}
        }
    }
}

impl Engine {
    /// Compresses `source` with zstd `level` (then encrypts it to
    /// `recipients`, if any) into object `rel`: one request when small,
    /// else parts of [`PART_BYTES`], `jobs` in flight. A failing upload
    /// aborts its multipart upload.
    pub fn upload(
        &self,
        rel: &str,
        mut source: impl Read,
        level: i32,
        jobs: usize,
        recipients: &[age::x25519::Recipient],
        progress: &dyn Progress,
    ) -> Result<Uploaded> {
        let local = |e: std::io::Error| Error::Remote {
            remote: self.name.clone(),
            reason: format!("could not compress {rel}: {e}"),
        };
        let mut packer = Packer::new(level, recipients).map_err(local)?;
        let mut parts = Parts {
            engine: self,
            rel,
            path: self.path(rel),
            jobs,
            sink: Sink::Unstarted,
        };
        let mut buf = vec![0u8; READ_BYTES];
        // The source is read outside the runtime: it may be a download
        // from this same remote (a re-encryption), which drives it too.
        let result = || -> Result<Uploaded> {
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(local(e)),
                };
                progress.advance(n as u64);
                if let Some(part) = packer.feed(&buf[..n]).map_err(local)? {
                    self.runtime.block_on(parts.send(part))?;
                }
            }
            let (rest, uploaded) = packer.finish().map_err(local)?;
            self.runtime.block_on(parts.finish(rest))?;
            Ok(uploaded)
        };
        let result = result();
        if result.is_err() {
            self.runtime.block_on(parts.abort());
        }
        result
    }

    /// Aborts the multipart uploads an earlier push left unfinished (it was
    /// killed, or lost the network): on S3 every upload a marker names; on
    /// a folder remote, the staging files in the `unfinished` bundle
    /// folders. How many were aborted.
    pub fn abort_abandoned_uploads(&self, unfinished: &[String]) -> Result<usize> {
        let Some(store) = self.multipart.clone() else {
            return Ok(self.remove_staged_uploads(unfinished));
        };
        let mut aborted = 0;
        for listed in self.list(UPLOADS)? {
            let marker = self.get(&listed.name)?.unwrap_or_default();
            if let Ok(marker) = serde_json::from_slice::<Marker>(&marker) {
                let path = self.path(&marker.object);
                let done = self
                    .runtime
                    .block_on(store.abort_multipart(&path, &marker.upload_id));
                match done {
                    Ok(()) => aborted += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        let what =
                            format!("could not abort the unfinished upload of {}", marker.object);
                        return Err(self.fail(&what, &e));
                    }
                }
            }
            self.delete(&listed.name)?;
        }
        Ok(aborted)
    }

    /// Removes a folder remote's staged uploads (`<object>#<digits>`) from
    /// the `unfinished` bundle folders; how many.
    fn remove_staged_uploads(&self, unfinished: &[String]) -> usize {
        let Some(root) = &self.local_root else {
            return 0;
        };
        let staged = |name: &std::ffi::OsStr| {
            name.to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let mut removed = 0;
        for dir in unfinished {
            for entry in walkdir::WalkDir::new(root.join(dir)).into_iter().flatten() {
                if entry.file_type().is_file()
                    && staged(entry.file_name())
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}
