//! State a daemon builds from its service's parameters (its settings, a
//! compiled policy, a Router, TLS), built once per configuration and again
//! after a reload replaces it: the one way every daemon caches what it
//! derives from the configuration ([`PerConfig`] underneath).

use std::sync::Arc;

use postern_config::{Config, Params, PerConfig};
use tokio::sync::watch;

type Build<T> = dyn Fn(&Params, Option<&T>) -> T + Send + Sync;

/// What [`Configured::get`] returns is built by its `build` function from
/// the service's parameters now in force; see [`crate::Context::configured`].
pub struct Configured<T> {
    config: watch::Receiver<Arc<Config>>,
    service: String,
    built: PerConfig<T>,
    build: Box<Build<T>>,
    broken: fn(&T) -> bool,
}

impl<T> std::fmt::Debug for Configured<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configured")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Configured<T> {
    pub(crate) fn new(
        config: watch::Receiver<Arc<Config>>,
        service: String,
        build: impl Fn(&Params, Option<&T>) -> T + Send + Sync + 'static,
    ) -> Self {
        Configured {
            config,
            service,
            built: PerConfig::default(),
            build: Box::new(build),
            broken: |_| false,
        }
    }

    /// A value for which `broken` holds (a table file missing) is built
    /// again now and then until it is not.
    pub fn broken_when(mut self, broken: fn(&T) -> bool) -> Self {
        self.broken = broken;
        self
    }

    /// The value for the configuration now in force.
    pub fn get(&self) -> T {
        let config = self.config.borrow().clone();
        self.built.get(&config, self.broken, |c, previous| {
            (self.build)(&c.params_for(&self.service), previous)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Arc<Config> {
        let text = format!("[main]\nmyhostname = \"mail.example.local\"\n{extra}\n");
        Arc::new(Config::from_str(&text, std::path::Path::new("/tmp/master.toml"), &[]).unwrap())
    }

    #[test]
    fn built_once_per_configuration_and_again_after_a_reload() {
        let (tx, rx) = watch::channel(config(""));
        let built = Configured::new(rx, "smtp".into(), |p, previous: Option<&Arc<String>>| {
            Arc::new(format!(
                "{} after {}",
                p.get("relayhost"),
                previous.map_or("none", |s| s.as_str())
            ))
        });
        let a = built.get();
        assert!(Arc::ptr_eq(&a, &built.get()));
        assert_eq!(*a, " after none");
        tx.send(config("relayhost = \"[10.0.0.1]\"")).unwrap();
        let b = built.get();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(*b, "[10.0.0.1] after  after none");
    }

    #[test]
    fn a_broken_value_is_kept_until_the_retry_time() {
        let (_tx, rx) = watch::channel(config(""));
        let builds = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = builds.clone();
        let built = Configured::new(rx, "smtp".into(), move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), ()>(())
        })
        .broken_when(Result::is_err);
        assert!(built.get().is_err());
        assert!(built.get().is_err());
        assert_eq!(builds.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
