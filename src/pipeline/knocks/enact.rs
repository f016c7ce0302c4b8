//! Writing a decision: its audit entry, and what it leads to (an invite, kick or ban; a review
//! item; a notice), with how rooms and decisions are shown to people.

use crate::{
    app::Shared,
    config::Notify,
    homeserver::MembershipChange,
    notices,
    policy::Action as Verdict,
    storage::{Action, Audit, AuditEntry, KnockRecord, Knocks, Op, Outcome, ReviewItem, Reviews, StoreError},
};

/// Longest reason or display name kept in the audit log.
pub(super) const MAX_AUDIT_TEXT: usize = 1_000;

pub(super) fn clip(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| if t.chars().count() > max { t.chars().take(max).collect::<String>() + "…" } else { t })
}

/// The reason sent with an invite, kick or ban when the rule gives none.
pub(super) fn default_reason(action: Verdict, rule: Option<&str>) -> String {
    let by = match rule {
        Some(r) => format!("rule {r}"),
        None => "the room's policy".to_owned(),
    };
    match action {
        Verdict::Accept => format!("Knock accepted by knockwarden ({by})"),
        Verdict::Deny => format!("Knock denied by knockwarden ({by})"),
        _ => format!("Banned by knockwarden ({by})"),
    }
}

/// Writes a decision on a knock: its audit entry (with `why_again` when a knock is decided
/// again), and what it leads to (an invite, kick or ban; a review item; a notice).
pub(super) fn enact(
    shared: &Shared,
    rec: &mut KnockRecord,
    d: &crate::policy::Decision,
    label: &str,
    now: u64,
    why_again: Option<&str>,
    ops: &mut Vec<Op>,
) -> Result<(), StoreError> {
    let store = &shared.store;
    let user = rec.user_id.as_str();
    let dry_run = shared.dry_run(d.dry_run);
    let notify = d.notify.unwrap_or(match shared.config.notify {
        Notify::All => d.action != Verdict::Ignore,
        Notify::Review => d.action == Verdict::Review,
        Notify::None => false,
    });
    let audit_id = store.next_id()?;
    rec.audit_id = Some(audit_id);
    let mut audit = AuditEntry {
        id: audit_id,
        time_ms: now,
        room_id: rec.room_id.clone(),
        user_id: rec.user_id.clone(),
        event_id: rec.event_id.clone(),
        reason: clip(rec.reason.clone(), MAX_AUDIT_TEXT),
        displayname: clip(rec.displayname.clone(), MAX_AUDIT_TEXT),
        policy: d.policy.clone(),
        policy_version: d.version,
        rule: d.rule.clone(),
        action: d.action,
        explanation: match why_again {
            Some(why) => format!("decided again ({why}): {}", d.explanation),
            None => d.explanation.clone(),
        },
        dry_run,
        lockdown: d.held_by_lockdown,
        review: None,
        outcome: Outcome::Pending,
        settled_ms: None,
    };
    let change = match d.action {
        Verdict::Accept => Some(MembershipChange::Invite),
        Verdict::Deny => Some(MembershipChange::Kick),
        Verdict::Ban => Some(MembershipChange::Ban),
        Verdict::Review | Verdict::Ignore => None,
    };
    let notice = || {
        notices::knock(&notices::KnockNotice {
            user,
            room: label,
            reason: rec.reason.as_deref(),
            displayname: rec.displayname.as_deref(),
            outcome: notices::verdict(d.action, dry_run),
            rule: d.rule.as_deref(),
            policy: &d.policy,
            version: d.version,
            review: None,
            closed: None,
        })
        .notice()
    };
    match (change, d.action) {
        _ if dry_run => {
            audit.outcome = Outcome::DryRun;
            audit.settled_ms = Some(now);
            if notify {
                ops.push(store.outbox().push(notice())?);
            }
        }
        (Some(change), _) => {
            let reason = d.reason.clone().unwrap_or_else(|| default_reason(d.action, d.rule.as_deref()));
            let act = Action::Act {
                change,
                room_id: rec.room_id.clone(),
                user_id: rec.user_id.clone(),
                reason,
                audit_id: Some(audit_id),
                notify,
                knock_event: Some(rec.event_id.clone()),
                verdict: None,
            };
            ops.push(store.outbox().push(act)?);
        }
        (None, Verdict::Review) => {
            let (number, reserve) = store.reviews().reserve_number()?;
            ops.push(reserve);
            audit.review = Some(number);
            ops.extend(Reviews::put(&ReviewItem {
                number,
                audit_id,
                room_id: rec.room_id.clone(),
                user_id: rec.user_id.clone(),
                event_id: rec.event_id.clone(),
                reason: clip(rec.reason.clone(), MAX_AUDIT_TEXT),
                created_ms: now,
                notice_event: None,
                closed: None,
                closed_ms: None,
            }));
            if notify {
                ops.push(store.outbox().push(Action::ReviewNotice { number })?);
            }
        }
        (None, _) => {
            audit.outcome = Outcome::Nothing;
            audit.settled_ms = Some(now);
            if notify {
                ops.push(store.outbox().push(notice())?);
            }
        }
    }
    ops.push(Audit::put(&audit));
    ops.extend(Knocks::put(rec));
    Ok(())
}
