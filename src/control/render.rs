//! Rendering reports ([`super::reports`]) and what came of verdicts ([`super::targets`],
//! [`super::verdicts`]) as replies: the one place their wording lives. Pure: a report (and
//! the time it was asked at, or how rooms are named) in, a reply out.

use super::{
    command::RoomArg,
    lockdown::{LockdownReport, LockdownRow},
    reply::Done,
    reports::{FailedRow, ListRead, ListsReport, LogRow, PAGE, Paged, PendingRow, RoomRow, Stats},
    targets::{MAX_WITHOUT_YES, RoomRefusal, VerdictOutcome},
};
use crate::{
    duration,
    events::Verdict,
    homeserver::MembershipChange,
    notices::{self, Msg},
    storage::{Batch, BatchItem, ItemResult, Outcome, Skip},
};

/// `!knock pending`.
pub(super) fn pending(report: &Paged<PendingRow>, now: u64) -> Done {
    let title = |total| format!("{total} knock(s) waiting for review");
    paged(report, title, "No knocks are waiting for review.", "pending knocks", |m, item| {
        m.line().bold(&format!("#{}", item.number));
        m.text(&format!(" {} on {} · ", item.user, item.room));
        match item.reason.as_deref() {
            Some(r) => m.quote(r),
            None => m.text("no reason given"),
        };
        m.text(&format!(" · {}", ago(now, item.created_ms)));
    })
    .map(|(mut m, total, page)| {
        let more = total.saturating_sub(page * PAGE);
        if more > 0 {
            m.line().text(&format!("…and {more} more: !knock pending {}", page + 1));
        }
        Done::ok(m)
    })
    .unwrap_or_else(|done| done)
}

/// `!knock failed`.
pub(super) fn failed(report: &Paged<FailedRow>, now: u64) -> Done {
    let title = |total| format!("{total} failed action(s)");
    let empty = "Nothing has failed: every action was carried out or is queued.";
    paged(report, title, empty, "failed actions", |m, f| {
        m.line().bold(&f.number.to_string());
        m.text(&format!(" {} · {} · {}", f.what, notices::clip(&f.error), ago(now, f.failed_ms)));
    })
    .map(|(mut m, _, _)| {
        m.line().text("Put one back with !knock retry N, or all with !knock retry all.");
        Done::ok(m)
    })
    .unwrap_or_else(|done| done)
}

/// A page of a list: the headline (which page of how many) and each row, or the reply when
/// there is nothing to show (`empty`; `what`: what the pages hold, for "only N pages of …").
fn paged<T>(
    report: &Paged<T>,
    title: impl Fn(usize) -> String,
    empty: &str,
    what: &str,
    mut row: impl FnMut(&mut Msg, &T),
) -> Result<(Msg, usize, usize), Done> {
    let (total, page, rows) = match report {
        Paged::Empty => return Err(Done::text(true, empty)),
        Paged::NoSuchPage { pages } => {
            return Err(Done::text(false, &format!("There are only {pages} page(s) of {what}.")));
        }
        Paged::Page { total, page, rows } => (*total, *page, rows),
    };
    let mut m = Msg::new();
    m.bold(&title(total));
    let pages = total.div_ceil(PAGE);
    if pages > 1 {
        m.text(&format!(" (page {page} of {pages})"));
    }
    for r in rows {
        row(&mut m, r);
    }
    Ok((m, total, page))
}

/// `!knock rooms`.
pub(super) fn rooms(rows: &[RoomRow], now: u64) -> Done {
    if rows.is_empty() {
        return Done::text(true, "knockwarden manages no room yet: a moderator invites it to one.");
    }
    let mut m = Msg::new();
    m.bold(&format!("{} managed room(s)", rows.len()));
    for r in rows {
        let can: Vec<String> = r.can.iter().map(|(v, ok)| format!("{v} {}", if *ok { "✓" } else { "✗" })).collect();
        m.line().bold(&r.room);
        if r.space {
            m.text(" (space)");
        }
        m.text(&format!(
            " · join rule {} · version {} · {} · policy ",
            r.join_rule.as_deref().unwrap_or("unknown"),
            r.version.as_deref().unwrap_or("unknown"),
            can.join(", "),
        ));
        m.code(r.policy.as_deref().unwrap_or("none")).text(&format!(" · {} pending", r.pending));
        if let Some(l) = &r.lockdown {
            m.text(&format!(" · 🔒 lockdown, {} left", crate::lockdown::left(l, now)));
        }
    }
    Done::ok(m)
}

/// `!knock stats`.
pub(super) fn stats(s: &Stats) -> Done {
    let by_action: Vec<String> = s.by_action.iter().map(|(a, n)| format!("{a} {n}")).collect();
    let o = &s.outcomes;
    let outcomes = [
        format!("done {}", o.done),
        format!("resolved by people {}", o.resolved),
        format!("dry run {}", o.dry_run),
        format!("nothing to do {}", o.nothing),
        format!("cancelled {}", o.cancelled),
        format!("failed {}", o.failed),
        format!("pending {}", o.pending),
    ];
    let median = s.median_resolve_ms.map_or_else(|| "no review resolved yet".to_owned(), human);
    let mut m = Msg::new();
    m.bold(&format!("Last {}: {} knock(s)", s.window.label(), s.knocks));
    m.line().text(&format!("decisions: {}", by_action.join(", ")));
    m.line().text(&format!("outcomes: {}", outcomes.join(", ")));
    m.line().text(&format!("waiting for review now: {}", s.waiting));
    m.line().text(&format!("median time to resolve a review: {median}"));
    Done::ok(m)
}

/// `!knock log`.
pub(super) fn log(rows: &[LogRow], now: u64) -> Done {
    if rows.is_empty() {
        return Done::text(true, "The audit log is empty: no knock has been decided yet.");
    }
    let mut m = Msg::new();
    m.bold(&format!("Last {} decision(s), newest first", rows.len()));
    for e in rows {
        m.line().text(&format!(
            "{} · {} on {} → {}{} (policy {} v{}, rule {}) · {}",
            ago(now, e.time_ms),
            e.user,
            e.room,
            e.action,
            e.review.map(|r| format!(" #{r}")).unwrap_or_default(),
            e.policy,
            e.version,
            e.rule.as_deref().unwrap_or("default"),
            outcome_text(&e.outcome),
        ));
    }
    Done::ok(m)
}

/// `!knock lists`.
pub(super) fn lists(report: &ListsReport, now: u64) -> Done {
    if report.followed.is_empty() && report.unread.is_empty() {
        return Done::text(true, "No policy names a ban list (`ban_list:` in a rule's `when`).");
    }
    let mut m = Msg::new();
    m.bold(&format!("{} ban list(s)", report.followed.len() + report.unread.len()));
    for l in &report.followed {
        m.line().bold(&l.names.join(", "));
        if !l.names.contains(&l.room_id) {
            m.text(&format!(" ({})", l.room_id));
        }
        m.text(&format!(" · {} user rules, {} server rules", l.users, l.servers));
        if l.ignored > 0 {
            m.text(&format!(", {} ignored", l.ignored));
        }
        if let Some(why) = &l.unavailable {
            m.text(&format!(" · ⛔ unavailable: {why} (knocks it would decide are held for review)"));
        }
        match l.changed_ms {
            Some(t) => m.text(&format!(" · last change {}", ago(now, t))),
            None => m.text(" · no change seen yet"),
        };
        match &l.read {
            ListRead::Failed(e) => m.text(&format!(" · ⚠️ last read failed: {e}")),
            ListRead::At(t) => m.text(&format!(" · read {}", ago(now, *t))),
            ListRead::Never => m.text(" · not read yet"),
        };
        match l.policies.is_empty() {
            true => m.text(" · used by no policy"),
            false => m.text(&format!(" · used by {}", l.policies.join(", "))),
        };
    }
    for u in &report.unread {
        m.line().bold(&u.name);
        m.text(if u.missing { " · no such room" } else { " · not joined yet" });
        m.text(&format!(" · used by {}", u.policies.join(", ")));
    }
    Done::ok(m)
}

/// What came of a decision, in a few words.
pub(super) fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Pending => "pending".into(),
        Outcome::Done => "done".into(),
        Outcome::DryRun => "dry run".into(),
        Outcome::Nothing => "nothing to do".into(),
        Outcome::Cancelled(why) => format!("cancelled: {}", notices::clip(&why.to_string())),
        Outcome::Failed(why) => format!("failed: {}", notices::clip(why)),
        Outcome::Resolved(how) => notices::clip(&how.to_string()),
    }
}

/// "3h ago", "just now".
pub(super) fn ago(now: u64, then: u64) -> String {
    let ms = now.saturating_sub(then);
    if ms < 60_000 { "just now".into() } else { format!("{} ago", human(ms)) }
}

/// A length of time in its largest whole unit: 45s, 12m, 3h, 2d.
pub(super) fn human(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        return format!("{s}s");
    }
    let d = std::time::Duration::from_secs(match s {
        s if s < 3600 => s / 60 * 60,
        s if s < 86_400 => s / 3600 * 3600,
        s => s / 86_400 * 86_400,
    });
    duration::format(d)
}

/// What a verdict command came to.
pub(super) fn verdict(outcome: VerdictOutcome, label: &dyn Fn(&str) -> String) -> Done {
    match outcome {
        VerdictOutcome::Queued(follow_ups) => Done { reply: None, ok: true, follow_ups },
        VerdictOutcome::Skipped { skip, asked } => skip_alone(&skip, asked.as_ref(), label),
        VerdictOutcome::RoomRefused(refusal) => room_refusal(&refusal),
        VerdictOutcome::NeedsYes { verdict, named } => needs_yes(verdict, named, MAX_WITHOUT_YES),
        VerdictOutcome::NothingPending(batch) => batch_summary(&batch, label),
    }
}

/// Why a command's room was not found.
pub(super) fn room_refusal(refusal: &RoomRefusal) -> Done {
    match refusal {
        RoomRefusal::UnknownAlias(alias) => {
            Done::text(false, &format!("Unknown room {alias}: the homeserver has no such alias."))
        }
        RoomRefusal::Refused { alias, error } => super::reply::refused(&format!("look up {alias}"), error),
    }
}

/// Why a verdict on one knock was not queued (`asked`: the room the command named).
fn skip_alone(skip: &Skip, asked: Option<&RoomArg>, label: &dyn Fn(&str) -> String) -> Done {
    let text = match skip {
        Skip::NoSuchItem { number } => {
            format!("There is no review item #{number}; !knock pending lists the open ones.")
        }
        Skip::Closed { number, how } => format!("#{number} is already closed: {how}."),
        Skip::OtherRoom { number, room_id } => {
            let asked = asked.map(|r| r.0.to_string()).unwrap_or_default();
            format!("#{number} is a knock on {}, not on {asked}.", label(room_id.as_str()))
        }
        Skip::NoPendingKnock { user_id } => {
            let where_ = asked.map(|r| format!(" on {}", r.0)).unwrap_or_default();
            format!("{user_id} has no pending knock{where_}; !knock pending lists the open reviews.")
        }
        Skip::SeveralRooms { user_id, rooms } => {
            let rooms: Vec<String> = rooms.iter().map(|r| label(r.as_str())).collect();
            format!(
                "{user_id} is knocking on {} rooms: {}. Say which one, e.g. !knock approve {user_id} {}",
                rooms.len(),
                rooms.join(", "),
                rooms[0]
            )
        }
        Skip::NotAUser { why, .. } => why.clone(),
    };
    Done::text(false, &text)
}

/// A knock a bulk verdict skipped, in a few words.
fn skip_short(skip: &Skip, label: &dyn Fn(&str) -> String) -> String {
    match skip {
        Skip::NoSuchItem { number } => format!("#{number} (no such review item)"),
        Skip::Closed { number, how } => format!("#{number} (already closed: {how})"),
        Skip::OtherRoom { number, room_id } => format!("#{number} (a knock on {})", label(room_id.as_str())),
        Skip::NoPendingKnock { user_id } => format!("{user_id} (no pending knock)"),
        Skip::SeveralRooms { user_id, rooms } => {
            let rooms: Vec<String> = rooms.iter().map(|r| label(r.as_str())).collect();
            format!("{user_id} (knocks on {}: name the room)", rooms.join(", "))
        }
        Skip::NotAUser { text, .. } => format!("{text} (not a user ID)"),
    }
}

/// `all` or `from` named more knocks than are carried out without `--yes`.
fn needs_yes(verdict: Verdict, named: usize, max: usize) -> Done {
    Done::text(
        false,
        &format!(
            "That names {named} pending knocks, more than {max}: nothing done. To {} them all, send the same \
             command with --yes.",
            verdict.as_str()
        ),
    )
}

/// Most knocks a summary names in each of its lines; the rest are counted.
const SUMMARY_NAMES: usize = 20;

/// The one reply to a bulk verdict: how many were invited, kicked or banned, which were not
/// pending (or had ended meanwhile), which failed. ✅ when at least one was carried out and
/// none failed.
pub(super) fn batch_summary(batch: &Batch, label: &dyn Fn(&str) -> String) -> Done {
    let (head, done_word) = match batch.change {
        MembershipChange::Invite => ("Approved", "invited"),
        MembershipChange::Kick => ("Denied", "kicked"),
        MembershipChange::Ban => ("Banned", "banned"),
    };
    let knock = |i: &BatchItem| {
        let number = i.review.map(|n| format!("#{n} ")).unwrap_or_default();
        format!("{number}{} in {}", i.user_id, label(i.room_id.as_str()))
    };
    let mut done = Vec::new();
    let mut not_pending: Vec<String> = batch.skipped.iter().map(|s| skip_short(s, label)).collect();
    let mut failed = Vec::new();
    for item in &batch.results {
        match &item.result {
            ItemResult::Done => done.push(knock(item)),
            ItemResult::NothingDone { why } => not_pending.push(format!("{} ({why})", knock(item))),
            ItemResult::Failed { why, number } => {
                failed.push(format!("{}: {why} (failed action {number}: !knock retry {number})", knock(item)))
            }
        }
    }
    let mut m = Msg::new();
    m.bold(&format!("{head}: {} {done_word}", done.len()));
    m.text(&format!(", {} not pending, {} failed.", not_pending.len(), failed.len()));
    for (title, names) in [(done_word, &done), ("not pending", &not_pending), ("failed", &failed)] {
        if names.is_empty() {
            continue;
        }
        let shown: Vec<&str> = names.iter().take(SUMMARY_NAMES).map(String::as_str).collect();
        let more = names.len() - shown.len();
        let more = if more > 0 { format!(", and {more} more") } else { String::new() };
        m.line().text(&format!("{}{}: {}{more}", title[..1].to_uppercase(), &title[1..], shown.join("; ")));
    }
    if done.is_empty() && failed.is_empty() && not_pending.is_empty() {
        m.line().text("No pending knock matched.");
    }
    if done.is_empty() || !failed.is_empty() { Done::failed(m) } else { Done::ok(m) }
}

/// `!knock lockdown …`.
pub(super) fn lockdown(report: &LockdownReport, now: u64) -> Done {
    let left = |r: &LockdownRow| crate::lockdown::left(&r.lockdown, now);
    let names = |rows: &[LockdownRow]| rows.iter().map(|r| r.room.clone()).collect::<Vec<_>>().join(", ");
    match report {
        LockdownReport::List(rows) if rows.is_empty() => Done::text(true, "No room is in lockdown."),
        LockdownReport::List(rows) => {
            let mut m = Msg::new();
            m.bold(&format!("{} room(s) in lockdown", rows.len()));
            for r in rows {
                let (ends, by) = (crate::lockdown::ends(&r.lockdown, now), &r.lockdown.cause);
                m.line().text("🔒 ").bold(&r.room).text(&format!(" · ends {ends} · {by}"));
            }
            Done::ok(m)
        }
        LockdownReport::Began { rows, by } => {
            let length = rows.first().map(left).unwrap_or_default();
            let ends = rows.first().map(|r| crate::lockdown::ends(&r.lockdown, now)).unwrap_or_default();
            let mut m = Msg::new();
            m.text(&format!(
                "🔒 Lockdown for {length} (by {by}): {}. It ends {ends}. Knocks stay open, but none is accepted \
                 by policy; those that would be are held for review. !knock lockdown off {} ends it.",
                names(rows),
                if rows.len() == 1 { rows[0].room.as_str() } else { "all" }
            ));
            Done::ok(m)
        }
        LockdownReport::Ended { rows, by } => Done::text(
            true,
            &format!("🔓 Lockdown ended by {by}: {}. Knocks are decided by policy again.", names(rows)),
        ),
        LockdownReport::NoRooms => {
            Done::text(false, "knockwarden manages no room yet: there is nothing to put in lockdown.")
        }
        LockdownReport::NotInLockdown(Some(room)) => Done::text(false, &format!("{room} is not in lockdown.")),
        LockdownReport::NotInLockdown(None) => Done::text(false, "No room is in lockdown."),
        LockdownReport::Refused(refusal) => room_refusal(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_naturally() {
        assert_eq!(ago(10_000, 5_000), "just now");
        assert_eq!(ago(4 * 3_600_000 + 120_000, 0), "4h ago");
        assert_eq!(human(90_000), "1m");
        assert_eq!(human(3 * 86_400_000 + 5), "3d");
        assert_eq!(human(7 * 86_400_000), "1w");
        assert_eq!(human(12_000), "12s");
    }

    #[test]
    fn pages_say_which_and_what_follows() {
        let row = |n| PendingRow {
            number: n,
            user: ruma::OwnedUserId::try_from(format!("@u{n}:x")).unwrap(),
            room: "#lobby:x".into(),
            reason: (n % 2 == 0).then(|| "hi".to_owned()),
            created_ms: 0,
        };
        let page = Paged::Page { total: 45, page: 2, rows: (21..=40).map(row).collect() };
        let Done { reply: Some(m), ok: true, .. } = pending(&page, 0) else { panic!() };
        let plain = &m.plain;
        assert!(plain.starts_with("45 knock(s) waiting for review (page 2 of 3)"), "{plain}");
        assert!(plain.contains("\n#22 @u22:x on #lobby:x · \"hi\" · just now"), "{plain}");
        assert!(plain.contains("\n#21 @u21:x on #lobby:x · no reason given · just now"), "{plain}");
        assert!(plain.ends_with("…and 5 more: !knock pending 3"), "{plain}");
        let Done { ok: false, reply: Some(m), .. } = pending(&Paged::NoSuchPage { pages: 3 }, 0) else { panic!() };
        assert_eq!(m.plain, "There are only 3 page(s) of pending knocks.");
    }
}
