//! `qctl status`.

use std::time::{SystemTime, UNIX_EPOCH};

use postern_ipc::control::MasterStatus;

pub(crate) fn print_status(status: &MasterStatus) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    println!(
        "master pid {} up {} config {} queue_directory {}",
        status.pid,
        human_duration(now - status.started_unix),
        status.config_file,
        status.queue_directory
    );
    for s in &status.services {
        let throttle = match s.throttled_until_unix {
            Some(until) => format!(" THROTTLED for {}", human_duration(until - now)),
            None => String::new(),
        };
        println!(
            "{:<14} {:<5} {:<22} {} processes {}/{} restarts {}{}{}",
            s.name,
            s.kind,
            s.listen,
            s.command,
            s.processes.len(),
            s.process_limit,
            s.restarts,
            s.last_exit
                .as_ref()
                .map(|e| format!(" last exit: {e}"))
                .unwrap_or_default(),
            throttle
        );
        for p in &s.processes {
            println!(
                "    pid {:<8} up {:<8} {:<10} sessions {}",
                p.pid,
                human_duration(now - p.started_unix),
                if p.draining {
                    "draining"
                } else if p.ready {
                    "ready"
                } else {
                    "starting"
                },
                p.sessions
            );
        }
        for c in &s.certificates {
            println!(
                "    certificate {} ({}) expires in {}",
                c.file,
                c.subject,
                human_duration(c.not_after_unix - now)
            );
        }
    }
}

pub(crate) fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}
