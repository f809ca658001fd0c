//! The connection cache: sessions that ended a transaction cleanly wait
//! here, per next hop, for the next request to the same destination, as
//! Postfix's scache with `smtp_connection_cache_on_demand`. A reused
//! session skips DNS, TCP, greeting and EHLO; it is RSET first. Sessions
//! idle longer than `smtp_connection_cache_time_limit` (2s) get QUIT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol;
use crate::session::Session;
use crate::settings::Settings;

/// Idle sessions by destination key.
#[derive(Debug, Default)]
pub struct Cache {
    idle: Mutex<HashMap<String, Vec<(Session, Instant)>>>,
}

impl Cache {
    /// Starts the reaper that closes expired sessions.
    pub fn start(settings: impl Fn() -> Arc<Settings> + Send + 'static) -> Arc<Cache> {
        let cache = Arc::new(Cache::default());
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                let expired = cache.expired(Instant::now());
                if !expired.is_empty() {
                    let s = settings();
                    for sess in expired {
                        let s = s.clone();
                        tokio::spawn(async move { protocol::quit(sess, &s).await });
                    }
                }
            }
        });
        cache
    }

    /// The most recently used idle session for `key`, if any is fresh.
    pub fn take(&self, key: &str) -> Option<Session> {
        let mut idle = self.idle.lock().unwrap();
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some((sess, expires)) = list.pop() {
            if expires > now {
                return Some(sess);
            }
            // Expired: dropping closes it; the reaper would QUIT it, but
            // it is here and not worth a task.
        }
        None
    }

    /// Keeps `sess` for `limit`; a destination with `most` idle sessions
    /// already ends its oldest.
    pub fn put(&self, key: String, sess: Session, limit: Duration, most: usize) -> Option<Session> {
        let mut idle = self.idle.lock().unwrap();
        let list = idle.entry(key).or_default();
        list.push((sess, Instant::now() + limit));
        (list.len() > most.max(1)).then(|| list.remove(0).0)
    }

    fn expired(&self, now: Instant) -> Vec<Session> {
        let mut idle = self.idle.lock().unwrap();
        let mut out = Vec::new();
        for list in idle.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, exp)| *exp <= now);
            *list = fresh;
            out.extend(old.into_iter().map(|(s, _)| s));
        }
        idle.retain(|_, l| !l.is_empty());
        out
    }
}
