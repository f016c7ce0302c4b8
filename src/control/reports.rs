//! Reports for moderators: the review queue, the managed rooms, statistics, the audit log.

use super::{
    command,
    run::{Ctx, Done},
};
use crate::{
    duration,
    notices::{self, Msg},
    policy::Action as PolicyAction,
    power,
    runner::ActionError,
    storage::{Outcome, now_ms},
};

/// Items shown per page of `!knock pending` and `!knock failed`.
pub const PAGE: usize = 20;

/// One page of a list of `len` items: the headline (`title`, and which page of how many)
/// and where the page starts, or the reply when there is nothing to show (`empty`: the list
/// is empty; `what`: what the pages hold, for "only N pages of …").
pub(super) fn page_of(len: usize, page: usize, title: &str, empty: &str, what: &str) -> Result<(Msg, usize), Done> {
    if len == 0 {
        return Err(Done::text(true, empty));
    }
    let pages = len.div_ceil(PAGE);
    let start = (page - 1) * PAGE;
    if start >= len {
        return Err(Done::text(false, &format!("There are only {pages} page(s) of {what}.")));
    }
    let mut m = Msg::new();
    m.bold(title);
    if pages > 1 {
        m.text(&format!(" (page {page} of {pages})"));
    }
    Ok((m, start))
}

impl Ctx<'_> {
    pub fn pending(&self, page: usize) -> Result<Done, ActionError> {
        let store = self.store();
        let open = store.open_reviews()?;
        let title = format!("{} knock(s) waiting for review", open.len());
        let (mut m, start) =
            match page_of(open.len(), page, &title, "No knocks are waiting for review.", "pending knocks") {
                Ok(p) => p,
                Err(done) => return Ok(done),
            };
        let now = now_ms();
        for item in open.iter().skip(start).take(PAGE) {
            m.line().bold(&format!("#{}", item.number));
            m.text(&format!(" {} on {} · ", item.user_id, crate::notices::room_label(store, &item.room_id)));
            match item.reason.as_deref().filter(|r| !r.trim().is_empty()) {
                Some(r) => m.quote(r),
                None => m.text("no reason given"),
            };
            m.text(&format!(" · {}", ago(now, item.created_ms)));
        }
        let more = open.len().saturating_sub(start + PAGE);
        if more > 0 {
            m.line().text(&format!("…and {more} more: !knock pending {}", page + 1));
        }
        Ok(Done::ok(m))
    }

    pub fn rooms(&self) -> Result<Done, ActionError> {
        let store = self.store();
        let control = self.shared.control_room_id();
        let active = self.shared.policies.current();
        let open = store.open_reviews()?;
        let bot = self.shared.bot.as_str();
        let rooms: Vec<String> = store
            .joined_rooms()?
            .into_iter()
            .filter(|r| Some(r.as_str()) != control.as_ref().map(|c| c.as_str()))
            .filter(|r| !self.shared.lists.is_list_room(r))
            .collect();
        if rooms.is_empty() {
            return Ok(Done::text(true, "knockwarden manages no room yet: a moderator invites it to one."));
        }
        let mut m = Msg::new();
        m.bold(&format!("{} managed room(s)", rooms.len()));
        for room in &rooms {
            let rec = store.room(room)?.unwrap_or_default();
            let pl = rec.power_levels.as_ref();
            let have = power::user_level(pl, &rec.creators, bot);
            let can: Vec<String> = ["invite", "kick", "ban"]
                .iter()
                .map(|v| format!("{v} {}", if have >= power::action_level(pl, v) { "✓" } else { "✗" }))
                .collect();
            let aliases = store.aliases_of(room)?;
            let policy = active.set.policy_for(room, &aliases).map(|p| p.name.clone()).unwrap_or_else(|| "none".into());
            let pending = open.iter().filter(|i| &i.room_id == room).count();
            m.line().bold(&crate::notices::room_label(store, room));
            m.text(&format!(
                " · join rule {} · version {} · {} · policy ",
                rec.join_rule.as_ref().map_or("unknown", |j| j.as_str()),
                rec.room_version.as_deref().unwrap_or("unknown"),
                can.join(", "),
            ));
            m.code(&policy).text(&format!(" · {pending} pending"));
        }
        Ok(Done::ok(m))
    }

    pub fn stats(&self, window: command::Window) -> Result<Done, ActionError> {
        let store = self.store();
        let now = now_ms();
        let since = now.saturating_sub(window.millis());
        let entries: Vec<_> = store.audit_all()?.into_iter().filter(|e| e.time_ms >= since).collect();
        let mut by_action = Vec::new();
        for a in
            [PolicyAction::Accept, PolicyAction::Deny, PolicyAction::Ban, PolicyAction::Review, PolicyAction::Ignore]
        {
            by_action.push(format!("{a} {}", entries.iter().filter(|e| e.action == a).count()));
        }
        let count = |f: &dyn Fn(&Outcome) -> bool| entries.iter().filter(|e| f(&e.outcome)).count();
        let outcomes = [
            format!("done {}", count(&|o| *o == Outcome::Done)),
            format!("resolved by people {}", count(&|o| matches!(o, Outcome::Resolved(_)))),
            format!("dry run {}", count(&|o| *o == Outcome::DryRun)),
            format!("nothing to do {}", count(&|o| *o == Outcome::Nothing)),
            format!("cancelled {}", count(&|o| matches!(o, Outcome::Cancelled(_)))),
            format!("failed {}", count(&|o| matches!(o, Outcome::Failed(_)))),
            format!("pending {}", count(&|o| *o == Outcome::Pending)),
        ];
        let mut times: Vec<u64> = store
            .reviews()?
            .into_iter()
            .filter(|r| r.created_ms >= since)
            .filter_map(|r| r.closed_ms.map(|c| c.saturating_sub(r.created_ms)))
            .collect();
        times.sort_unstable();
        let median = match times.len() {
            0 => "no review resolved yet".to_owned(),
            n if n % 2 == 1 => human(times[n / 2]),
            n => human((times[n / 2 - 1] + times[n / 2]) / 2),
        };
        let mut m = Msg::new();
        m.bold(&format!("Last {}: {} knock(s)", window.label(), entries.len()));
        m.line().text(&format!("decisions: {}", by_action.join(", ")));
        m.line().text(&format!("outcomes: {}", outcomes.join(", ")));
        m.line().text(&format!("waiting for review now: {}", store.open_reviews()?.len()));
        m.line().text(&format!("median time to resolve a review: {median}"));
        Ok(Done::ok(m))
    }

    pub fn log(&self, n: usize) -> Result<Done, ActionError> {
        let store = self.store();
        let entries = store.audit_last(n)?;
        if entries.is_empty() {
            return Ok(Done::text(true, "The audit log is empty: no knock has been decided yet."));
        }
        let now = now_ms();
        let mut m = Msg::new();
        m.bold(&format!("Last {} decision(s), newest first", entries.len()));
        for e in &entries {
            m.line().text(&format!(
                "{} · {} on {} → {}{} (policy {} v{}, rule {}) · {}",
                ago(now, e.time_ms),
                e.user_id,
                crate::notices::room_label(store, &e.room_id),
                e.action,
                e.review.map(|r| format!(" #{r}")).unwrap_or_default(),
                e.policy,
                e.policy_version,
                e.rule.as_deref().unwrap_or("default"),
                outcome_text(&e.outcome),
            ));
        }
        Ok(Done::ok(m))
    }
}

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
}
