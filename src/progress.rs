//! How long-running library work (a run, a push, a commit of a big folder) reports progress
//! without printing: it calls a `Progress` that the binary implements (a bar on a TTY, plain
//! lines otherwise). Library code takes `&dyn Progress` and never assumes anyone is watching.

/// Receives progress of one unit of work. All methods have no-op defaults.
pub trait Progress: Send + Sync {
    /// A new phase begins: `what` names it ("requests", "objects"), `total` counts its units,
    /// `bytes` says the units are bytes (so rates read as MiB/s).
    fn start(&self, _what: &str, _total: u64, _bytes: bool) {}
    /// `n` more units are done.
    fn advance(&self, _n: u64) {}
    /// A short status shown beside the bar, e.g. "3 errors · $0.0123".
    fn status(&self, _msg: &str) {}
    /// The phase is over.
    fn finish(&self) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {}
