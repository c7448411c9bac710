//! Progress of the long stages (loading a dataset, rendering reports), reported to whoever
//! drives the library through [`Progress`]. The library draws nothing itself; the `rulebook`
//! binary turns these calls into progress bars.

use std::sync::Arc;

/// A stage whose progress is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the dataset's files; units are bytes.
    Loading,
    /// Rendering PDF reports; units are reports.
    Rendering,
}

/// Receives progress; called from worker threads. Every method does nothing by default.
pub trait Progress: Send + Sync {
    /// `stage` starts with `total` units to do.
    fn start(&self, _stage: Stage, _total: u64) {}
    /// `n` more units of the current stage are done.
    fn advance(&self, _n: u64) {}
    /// The current stage ended; `ok` is false when it stopped on an error.
    fn finish(&self, _ok: bool) {}
}

/// Reports nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// A shared [`Progress`] that options structs can hold (silent by default).
#[derive(Clone)]
pub struct Reporter(pub Arc<dyn Progress>);

impl Default for Reporter {
    fn default() -> Self {
        Reporter(Arc::new(Silent))
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl std::ops::Deref for Reporter {
    type Target = dyn Progress;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
