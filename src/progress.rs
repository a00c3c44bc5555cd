//! Progress reporting: the library calls this trait; the binary draws it.

/// Receives progress events from long operations. Implementations must be cheap.
pub trait Progress: Sync {
    /// A phase starts (e.g. capturing a store); `total_bytes` when known.
    fn start(&self, label: &str, total_bytes: Option<u64>);
    /// `bytes` more were processed in the current phase.
    fn advance(&self, bytes: u64);
    /// The current phase ended.
    fn finish(&self);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total_bytes: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}
