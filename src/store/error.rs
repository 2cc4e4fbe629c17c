//! What the store reports when it fails, and what it knows of its own health.

/// Why a store operation failed, in terms every backend shares.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store has no space left for this write; it may have again later.
    #[error("the store is out of space")]
    Full,
    /// The store cannot be written or reached now (read-only files, an I/O error, a
    /// database server that is down); worth trying again later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Any other failure of the backend.
    #[error("store error: {0}")]
    Backend(String),
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The database was migrated by a newer webhookd; this one must not write to it.
    #[error("the database schema is at version {found}, newer than this webhookd knows ({known}); run the newer webhookd, or a database of its own")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the store has shut down")]
    Closed,
}

/// Whether the store takes writes, as its latest writes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Writable,
    /// Out of space: writes that need more fail until space returns.
    Full,
    /// Cannot be written or reached, for this reason.
    Unavailable(String),
}

impl StoreHealth {
    pub fn is_writable(&self) -> bool {
        *self == StoreHealth::Writable
    }

    /// Why writes fail, for operators; `None` while writable.
    pub fn problem(&self) -> Option<String> {
        match self {
            StoreHealth::Writable => None,
            StoreHealth::Full => Some(StoreError::Full.to_string()),
            StoreHealth::Unavailable(why) => Some(format!("the store is unavailable: {why}")),
        }
    }
}

/// A backend's record of its health, updated by the outcome of each write.
#[derive(Debug)]
pub(crate) struct HealthCell(std::sync::Mutex<StoreHealth>);

impl HealthCell {
    pub(crate) fn new() -> HealthCell {
        HealthCell(std::sync::Mutex::new(StoreHealth::Writable))
    }

    pub(crate) fn get(&self) -> StoreHealth {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, health: StoreHealth) {
        let mut current = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != health {
            match health.problem() {
                Some(problem) => log::error!("store: writes fail: {problem}"),
                None => log::info!("store: writable again"),
            }
            *current = health;
        }
    }

    /// Learns from the result of a write: `grows` says whether it needed new space, so
    /// that its success proves the store writable again.
    pub(crate) fn observe<T>(&self, result: &Result<T, StoreError>, grows: bool) {
        match result {
            Err(StoreError::Full) => self.set(StoreHealth::Full),
            Err(StoreError::Unavailable(why)) => self.set(StoreHealth::Unavailable(why.clone())),
            Ok(_) if grows => self.set(StoreHealth::Writable),
            _ => {}
        }
    }
}
