//! The command line every Postern binary accepts.

use std::path::PathBuf;

use clap::Args;
use postern_config::{Config, ConfigError, default_config_path, parse_override};

/// `--config PATH` and repeatable `-o name=value`, flattened into each
/// binary's own clap parser so the interface is the same everywhere.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The configuration file.
    #[arg(long, value_name = "PATH", default_value_os_t = default_config_path())]
    pub config: PathBuf,

    /// Override a [main] parameter for this run (repeatable), like
    /// Postfix's `-o name=value`.
    #[arg(short = 'o', value_name = "NAME=VALUE")]
    pub overrides: Vec<String>,
}

impl CommonArgs {
    /// The `-o` arguments split into pairs; a malformed one is an error.
    fn override_pairs(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.overrides.iter().map(|o| parse_override(o)).collect()
    }

    /// Loads and validates the configuration with the overrides applied.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config, &self.override_pairs()?)
    }

    /// The arguments to pass on to a child so it sees the same configuration.
    pub fn to_child_args(&self) -> Vec<String> {
        let mut out = vec!["--config".to_string(), self.config.display().to_string()];
        for o in &self.overrides {
            out.push("-o".to_string());
            out.push(o.clone());
        }
        out
    }
}
