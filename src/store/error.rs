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
        self.lock().clone()
    }

    pub(crate) fn set(&self, health: StoreHealth) {
        Self::replace(&mut self.lock(), health);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreHealth> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn replace(current: &mut StoreHealth, health: StoreHealth) {
        if *current != health {
            match health.problem() {
                Some(problem) => log::error!("store: writes fail: {problem}"),
                None => log::info!("store: writable again"),
            }
            *current = health;
        }
    }

    /// Learns from the result of a write: `grows` says whether it needed new space. Its
    /// success proves an unreachable store writable again, but not a full one: a small
    /// write can fit in the last free bytes of a full store while the next fails, and
    /// readiness would flap between the two. A full store is writable again once a probe
    /// ([`HealthCell::observe_probe`]) finds room or its size limit is raised.
    pub(crate) fn observe<T>(&self, result: &Result<T, StoreError>, grows: bool) {
        match result {
            Err(StoreError::Full) => self.set(StoreHealth::Full),
            Err(StoreError::Unavailable(why)) => self.set(StoreHealth::Unavailable(why.clone())),
            Ok(_) if grows => {
                let mut current = self.lock();
                if *current != StoreHealth::Full {
                    Self::replace(&mut current, StoreHealth::Writable);
                }
            }
            _ => {}
        }
    }

    /// Learns from a probe: a write of more than a page of new data, whose success proves
    /// the store writable, full before or not.
    pub(crate) fn observe_probe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.set(StoreHealth::Writable),
            failed => self.observe(failed, true),
        }
    }

    /// `probe`, whose outcome `health` learns from once it resolves.
    pub(crate) fn observing_probe(
        health: &std::sync::Arc<HealthCell>,
        probe: super::StoreFuture<()>,
    ) -> super::StoreFuture<()> {
        let health = std::sync::Arc::clone(health);
        Box::pin(async move {
            let result = probe.await;
            health.observe_probe(&result);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_store_is_writable_again_by_a_probe_not_by_a_small_write() {
        let health = HealthCell::new();
        health.observe::<()>(&Err(StoreError::Full), true);
        assert_eq!(health.get(), StoreHealth::Full);
        // A record that fit in the last free bytes.
        health.observe(&Ok(()), true);
        assert_eq!(health.get(), StoreHealth::Full);
        health.observe_probe::<()>(&Err(StoreError::Full));
        assert_eq!(health.get(), StoreHealth::Full);
        health.observe_probe(&Ok(()));
        assert_eq!(health.get(), StoreHealth::Writable);
    }

    #[test]
    fn an_unreachable_store_is_writable_again_by_any_growing_write() {
        let health = HealthCell::new();
        health.observe::<()>(
            &Err(StoreError::Unavailable("disk I/O error".into())),
            false,
        );
        assert!(!health.get().is_writable());
        health.observe(&Ok(()), false);
        assert!(!health.get().is_writable());
        health.observe(&Ok(()), true);
        assert_eq!(health.get(), StoreHealth::Writable);
    }
}
