//! `!knock lists`: the ban lists followed, their rule counts, when they last changed, whether
//! they could be read, and which policies use them.

use super::{
    reports::ago,
    run::{Ctx, Done},
};
use crate::{notices::Msg, runner::ActionError, storage::now_ms};

impl Ctx<'_> {
    pub fn lists(&self) -> Result<Done, ActionError> {
        let active = self.shared.policies.current();
        let named = active.set.ban_lists();
        let records = self.store().list_records()?;
        if named.is_empty() && records.is_empty() {
            return Ok(Done::text(true, "No policy names a ban list (`ban_list:` in a rule's `when`)."));
        }
        let now = now_ms();
        let users_of = |names: &[String]| -> Vec<String> {
            let mut out: Vec<String> = active
                .set
                .policies()
                .iter()
                .filter(|p| p.ban_lists().iter().any(|l| names.contains(l)))
                .map(|p| p.name.clone())
                .collect();
            out.sort();
            out.dedup();
            out
        };
        let shown: Vec<String> = records
            .iter()
            .flat_map(|r| if r.names.is_empty() { vec![r.room_id.to_string()] } else { r.names.clone() })
            .collect();
        let unread: Vec<&String> = named.iter().filter(|n| !shown.contains(n)).collect();
        let mut m = Msg::new();
        m.bold(&format!("{} ban list(s)", records.len() + unread.len()));
        for rec in &records {
            let mut names = rec.names.clone();
            if names.is_empty() {
                names.push(rec.room_id.to_string());
            }
            let (users, servers, ignored) = self.shared.lists.counts(rec.room_id.as_str()).unwrap_or_default();
            m.line().bold(&names.join(", "));
            if !names.iter().any(|n| *n == rec.room_id.as_str()) {
                m.text(&format!(" ({})", rec.room_id));
            }
            m.text(&format!(" · {users} user rules, {servers} server rules"));
            if ignored > 0 {
                m.text(&format!(", {ignored} ignored"));
            }
            if let Some(why) = self.shared.lists.unavailable(rec.room_id.as_str()) {
                m.text(&format!(" · ⛔ unavailable: {why} (knocks it would decide are held for review)"));
            }
            match rec.changed_ms {
                Some(t) => m.text(&format!(" · last change {}", ago(now, t))),
                None => m.text(" · no change seen yet"),
            };
            match (&rec.error, rec.read_ms) {
                (Some(e), _) => m.text(&format!(" · ⚠️ last read failed: {e}")),
                (None, Some(t)) => m.text(&format!(" · read {}", ago(now, t))),
                (None, None) => m.text(" · not read yet"),
            };
            let policies = users_of(&names);
            match policies.is_empty() {
                true => m.text(" · used by no policy"),
                false => m.text(&format!(" · used by {}", policies.join(", "))),
            };
        }
        for name in unread {
            m.line().bold(name);
            let missing = self.store().alias(name)? == Some(None);
            m.text(if missing { " · no such room" } else { " · not joined yet" });
            m.text(&format!(" · used by {}", users_of(std::slice::from_ref(name)).join(", ")));
        }
        Ok(Done::ok(m))
    }
}
