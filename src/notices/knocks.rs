//! How knocks and decisions are shown: a knock's notice, the words for a verdict, a room's
//! name.

use super::Msg;
use crate::{
    storage::{AuditEntry, Store},
    text::{clip, escape},
};

/// What a decision led to, in a few words ("accepted", "would ban", …).
pub fn verdict(action: crate::policy::Action, dry_run: bool) -> &'static str {
    use crate::policy::Action::*;
    match (action, dry_run) {
        (Accept, false) => "accepted (invited)",
        (Deny, false) => "denied (kicked)",
        (Ban, false) => "banned",
        (Review, false) => "waiting for review",
        (Ignore, false) => "ignored",
        (Accept, true) => "would accept (dry run)",
        (Deny, true) => "would deny (dry run)",
        (Ban, true) => "would ban (dry run)",
        (Review, true) => "would ask for review (dry run)",
        (Ignore, true) => "would ignore (dry run)",
    }
}

/// The facts a decision notice shows.
pub struct KnockNotice<'a> {
    pub user: &'a str,
    pub room: &'a str,
    pub reason: Option<&'a str>,
    pub displayname: Option<&'a str>,
    pub outcome: &'a str,
    pub rule: Option<&'a str>,
    pub policy: &'a str,
    pub version: u64,
    /// The review number, for review notices.
    pub review: Option<u64>,
    /// How the review ended, once it has (replaces the "reply or react" hint).
    pub closed: Option<&'a str>,
}

/// One concise notice about a decision.
pub fn knock(n: &KnockNotice) -> Msg {
    let who = match n.displayname {
        Some(d) if !d.trim().is_empty() => format!("{} ({})", clip(d), n.user),
        _ => n.user.to_owned(),
    };
    let reason = n.reason.filter(|r| !r.trim().is_empty()).map(clip);
    let rule = n.rule.unwrap_or("default");
    let number = n.review.map(|r| format!("#{r} ")).unwrap_or_default();
    let mut plain = format!("{number}{who} knocked on {}", n.room);
    let mut html = format!("{}<b>{}</b> knocked on <b>{}</b>", escape(&number), escape(&who), escape(n.room));
    match &reason {
        Some(r) => {
            plain.push_str(&format!(": \"{r}\""));
            html.push_str(&format!(": <i>“{}”</i>", escape(r)));
        }
        None => {
            plain.push_str(" (no reason given)");
            html.push_str(" (no reason given)");
        }
    }
    plain.push_str(&format!("\n→ {} · rule {rule} · policy {} v{}", n.outcome, n.policy, n.version));
    html.push_str(&format!(
        "<br>→ {} · rule <code>{}</code> · policy <code>{}</code> v{}",
        escape(n.outcome),
        escape(rule),
        escape(n.policy),
        n.version
    ));
    if let Some(how) = n.closed {
        plain.push_str(&format!("\n✔ Closed: {how}"));
        html.push_str(&format!("<br>✔ <b>Closed</b>: {}", escape(how)));
    } else if let Some(r) = n.review {
        plain.push_str(&format!("\nReply !knock approve {r} / !knock deny {r} / !knock ban {r}, or react ✅ ❌ 🔨"));
        html.push_str(&format!(
            "<br>Reply <code>!knock approve {r}</code> / <code>!knock deny {r}</code> / <code>!knock ban {r}</code>, or react ✅ ❌ 🔨"
        ));
    }
    Msg { plain, html }
}

/// A room as shown to people: its first known alias, else its ID.
pub fn room_label(store: &Store, room: impl AsRef<str>) -> String {
    let room = room.as_ref();
    store.aliases().of(room).ok().and_then(|a| a.into_iter().next()).unwrap_or_else(|| room.to_owned())
}

/// The notice about an audited decision: `outcome` says what came of it; `review` numbers a
/// review item, `closed` says how it ended.
pub fn entry_notice(store: &Store, e: &AuditEntry, outcome: &str, review: Option<u64>, closed: Option<&str>) -> Msg {
    let held = format!("{outcome} (🔒 lockdown: not accepted by policy while it lasts)");
    let outcome = if e.lockdown { held.as_str() } else { outcome };
    knock(&KnockNotice {
        user: e.user_id.as_str(),
        room: &room_label(store, &e.room_id),
        reason: e.reason.as_deref(),
        displayname: e.displayname.as_deref(),
        outcome,
        rule: e.rule.as_deref(),
        policy: &e.policy,
        version: e.policy_version,
        review,
        closed,
    })
}
