//! `qctl config` (postconf).

use anyhow::bail;
use postern_config::Config;

pub(crate) fn print_config(
    config: &Config,
    non_default: bool,
    expand: bool,
    names: &[String],
    json: bool,
) -> anyhow::Result<()> {
    let entries = config.main().entries();
    for name in names {
        if !entries.iter().any(|e| &e.name == name) {
            bail!("unknown parameter: {name}");
        }
    }
    let wanted = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
    // (name, value) in postconf's order: [main], then with -n each
    // service's options as postconf -P writes master.cf's -o settings
    // (`service/type/name`), since those are in force for that service.
    let mut lines: Vec<(String, String)> = Vec::new();
    for e in &entries {
        if !wanted(&e.name) || (non_default && e.is_default) {
            continue;
        }
        if non_default && config.is_unused(&e.name) {
            eprintln!(
                "qctl: warning: {}: unused parameter: {}={}",
                config.file.display(),
                e.name,
                e.raw
            );
            continue;
        }
        let value = if expand { &e.expanded } else { &e.raw };
        lines.push((e.name.clone(), value.clone()));
    }
    if non_default {
        for svc in &config.services {
            let params = config.params_for(&svc.name);
            let kind = match svc.kind {
                postern_config::ServiceType::Inet => "inet",
                postern_config::ServiceType::Unix => "unix",
            };
            for (name, raw) in &svc.options {
                // A -o for the whole run beats the option: not in force.
                if !wanted(name) || config.is_unused(name) || config.is_overridden(name) {
                    continue;
                }
                let value = if expand {
                    params.get(name)
                } else {
                    raw.clone()
                };
                lines.push((format!("{}/{kind}/{name}", svc.name), value));
            }
        }
    }
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            lines.into_iter().map(|(k, v)| (k, v.into())).collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        for (name, value) in lines {
            println!("{name} = {value}");
        }
    }
    Ok(())
}
