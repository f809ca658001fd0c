//! Scanning: which messages are due, at start (recovery), after a commit,
//! on the master's wakeups and every queue_run_delay.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Qmgr, blocking, unix};

impl Qmgr {
    /// Schedules every message that is due now.
    pub async fn scan(self: &Arc<Self>) {
        let store = self.store.clone();
        let now = unix(SystemTime::now());
        match blocking(move || store.due(now)).await {
            Ok(ids) => {
                for id in ids {
                    self.schedule(id);
                }
            }
            Err(e) => tracing::warn!("queue scan failed: {e}"),
        }
    }
}
