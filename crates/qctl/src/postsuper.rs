//! postsuper's answers: `qctl delete ALL` and `qctl requeue` count
//! what they changed.

use postern_ipc::qmgr_admin::AdminReply;

use crate::client::refuse;

/// A count answer in postsuper's words: `postsuper: Deleted: 3 messages`.
pub(crate) fn counted(reply: AdminReply, verb: &str, json: bool) -> anyhow::Result<()> {
    match reply {
        AdminReply::Count { count } => {
            let message = format!(
                "postsuper: {verb}: {count} message{}",
                if count == 1 { "" } else { "s" }
            );
            if json {
                let mut obj = serde_json::json!({ "ok": true, "message": message });
                obj[verb.to_ascii_lowercase()] = count.into();
                println!("{obj}");
            } else {
                println!("{message}");
            }
            Ok(())
        }
        other => refuse(other),
    }
}
