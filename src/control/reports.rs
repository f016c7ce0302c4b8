//! Reports for moderators (`!knock pending`, `rooms`, `stats`, `log`, `failed`, `lists`),
//! gathered as typed data from only what each needs; [`super::render`] turns them into
//! replies.

use ruma::OwnedUserId;

use super::command::Window;
use crate::{
    lists::Lists,
    notices::room_label,
    policy::{Action as PolicyAction, PolicySet},
    power,
    storage::{Lockdown, Outcome, Store, StoreError},
};

/// Items shown per page of `!knock pending` and `!knock failed`.
pub const PAGE: usize = 20;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Paged<T> {
    /// The list is empty.
    Empty,
    /// The list has fewer pages than the one asked for.
    NoSuchPage {
        pages: usize,
    },
    Page {
        total: usize,
        page: usize,
        rows: Vec<T>,
    },
}

impl<T> Paged<T> {
    /// Page `page` (from 1) of `all`, its rows made by `row`.
    fn of<A>(all: &[A], page: usize, row: impl FnMut(&A) -> T) -> Paged<T> {
        if all.is_empty() {
            return Paged::Empty;
        }
        let start = (page - 1) * PAGE;
        if start >= all.len() {
            return Paged::NoSuchPage { pages: all.len().div_ceil(PAGE) };
        }
        Paged::Page { total: all.len(), page, rows: all.iter().skip(start).take(PAGE).map(row).collect() }
    }
}

/// A knock waiting for review.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    pub number: u64,
    pub user: OwnedUserId,
    pub room: String,
    pub reason: Option<String>,
    pub created_ms: u64,
}

/// `!knock pending`.
pub fn pending(store: &Store, page: usize) -> Result<Paged<PendingRow>, StoreError> {
    let open = store.reviews().open()?;
    Ok(Paged::of(&open, page, |item| PendingRow {
        number: item.number,
        user: item.user_id.clone(),
        room: room_label(store, &item.room_id),
        reason: item.reason.clone().filter(|r| !r.trim().is_empty()),
        created_ms: item.created_ms,
    }))
}

/// A managed room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRow {
    pub room: String,
    pub join_rule: Option<String>,
    pub version: Option<String>,
    /// Whether the bot may invite, kick and ban there.
    pub can: [(&'static str, bool); 3],
    pub policy: Option<String>,
    pub pending: usize,
    /// The room is a space.
    pub space: bool,
    /// The room's lockdown in force, if any.
    pub lockdown: Option<Lockdown>,
}

/// What `!knock rooms` looks at besides the store.
pub struct RoomsView<'a> {
    pub bot: &'a str,
    pub control_room: Option<&'a str>,
    pub policies: &'a PolicySet,
    pub lists: &'a Lists,
}

/// The rooms the bot manages: those it is joined to, but for the control room and the ban
/// lists (`!knock rooms`, `!knock lockdown all`).
pub fn managed_rooms(store: &Store, control_room: Option<&str>, lists: &Lists) -> Result<Vec<String>, StoreError> {
    let mut rooms = store.rooms().joined()?;
    rooms.retain(|r| Some(r.as_str()) != control_room && !lists.is_list_room(r));
    Ok(rooms)
}

/// `!knock rooms`: the rooms the bot manages.
pub fn rooms(store: &Store, view: &RoomsView, now: u64) -> Result<Vec<RoomRow>, StoreError> {
    let open = store.reviews().open()?;
    let mut out = Vec::new();
    for room in managed_rooms(store, view.control_room, view.lists)? {
        let rec = store.rooms().get(&room)?.unwrap_or_default();
        let pl = rec.power_levels.as_ref();
        let have = power::user_level(pl, &rec.creators, view.bot);
        let can = ["invite", "kick", "ban"].map(|v| (v, have >= power::action_level(pl, v)));
        let aliases = store.aliases().of(&room)?;
        out.push(RoomRow {
            room: room_label(store, &room),
            join_rule: rec.join_rule.as_ref().map(|j| j.as_str().to_owned()),
            version: rec.room_version.clone(),
            can,
            policy: view.policies.policy_for(&room, &aliases).map(|p| p.name.clone()),
            pending: open.iter().filter(|i| i.room_id.as_str() == room).count(),
            space: rec.room_type == Some(ruma::room::RoomType::Space),
            lockdown: store.lockdowns().active(&room, now)?,
        });
    }
    Ok(out)
}

/// How the decisions of a window came out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub done: usize,
    pub resolved: usize,
    pub dry_run: usize,
    pub nothing: usize,
    pub cancelled: usize,
    pub failed: usize,
    pub pending: usize,
}

/// `!knock stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub window: Window,
    pub knocks: usize,
    pub by_action: Vec<(PolicyAction, usize)>,
    pub outcomes: OutcomeCounts,
    /// Review items open now.
    pub waiting: usize,
    /// The median time to resolve a review item opened in the window.
    pub median_resolve_ms: Option<u64>,
}

/// `!knock stats`: the window's decisions and how they came out.
pub fn stats(store: &Store, window: Window, now: u64) -> Result<Stats, StoreError> {
    let since = now.saturating_sub(window.millis());
    let entries: Vec<_> = store.audit().all()?.into_iter().filter(|e| e.time_ms >= since).collect();
    let by_action =
        [PolicyAction::Accept, PolicyAction::Deny, PolicyAction::Ban, PolicyAction::Review, PolicyAction::Ignore]
            .map(|a| (a, entries.iter().filter(|e| e.action == a).count()))
            .to_vec();
    let mut outcomes = OutcomeCounts::default();
    for e in &entries {
        let n = match e.outcome {
            Outcome::Done => &mut outcomes.done,
            Outcome::Resolved(_) => &mut outcomes.resolved,
            Outcome::DryRun => &mut outcomes.dry_run,
            Outcome::Nothing => &mut outcomes.nothing,
            Outcome::Cancelled(_) => &mut outcomes.cancelled,
            Outcome::Failed(_) => &mut outcomes.failed,
            Outcome::Pending => &mut outcomes.pending,
        };
        *n += 1;
    }
    let mut times: Vec<u64> = store
        .reviews()
        .all()?
        .into_iter()
        .filter(|r| r.created_ms >= since)
        .filter_map(|r| r.closed_ms.map(|c| c.saturating_sub(r.created_ms)))
        .collect();
    times.sort_unstable();
    let median_resolve_ms = match times.len() {
        0 => None,
        n if n % 2 == 1 => Some(times[n / 2]),
        n => Some((times[n / 2 - 1] + times[n / 2]) / 2),
    };
    let waiting = store.reviews().open()?.len();
    Ok(Stats { window, knocks: entries.len(), by_action, outcomes, waiting, median_resolve_ms })
}

/// One decision of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub time_ms: u64,
    pub user: OwnedUserId,
    pub room: String,
    pub action: PolicyAction,
    pub review: Option<u64>,
    pub policy: String,
    pub version: u64,
    pub rule: Option<String>,
    pub outcome: Outcome,
}

/// `!knock log`: the last `n` decisions, newest first.
pub fn log(store: &Store, n: usize) -> Result<Vec<LogRow>, StoreError> {
    Ok(store
        .audit()
        .last(n)?
        .into_iter()
        .map(|e| LogRow {
            time_ms: e.time_ms,
            room: room_label(store, &e.room_id),
            user: e.user_id,
            action: e.action,
            review: e.review,
            policy: e.policy,
            version: e.policy_version,
            rule: e.rule,
            outcome: e.outcome,
        })
        .collect())
}

/// An entry of the failed list.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRow {
    pub number: u64,
    /// What it was, for people.
    pub what: String,
    pub error: String,
    pub failed_ms: u64,
}

/// `!knock failed`.
pub fn failed(store: &Store, page: usize) -> Result<Paged<FailedRow>, StoreError> {
    let all = store.failures().all()?;
    Ok(Paged::of(&all, page, |f| FailedRow {
        number: f.number,
        what: super::failed::describe(&f.item),
        error: f.error.clone(),
        failed_ms: f.failed_ms,
    }))
}

/// How the last read of a ban list went.
#[derive(Debug, Clone, PartialEq)]
pub enum ListRead {
    Failed(String),
    At(u64),
    Never,
}

/// A ban list followed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    /// The names policies give it (its room ID when none).
    pub names: Vec<String>,
    pub room_id: String,
    pub users: usize,
    pub servers: usize,
    pub ignored: usize,
    pub unavailable: Option<String>,
    pub changed_ms: Option<u64>,
    pub read: ListRead,
    pub policies: Vec<String>,
}

/// A ban list a policy names that is not followed yet.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadList {
    pub name: String,
    /// No room has this alias.
    pub missing: bool,
    pub policies: Vec<String>,
}

/// `!knock lists` (both empty: no policy names a list, and none is followed).
#[derive(Debug, Clone, PartialEq)]
pub struct ListsReport {
    pub followed: Vec<ListRow>,
    pub unread: Vec<UnreadList>,
}

/// `!knock lists`: the lists followed, and those named but not followed yet.
pub fn lists(store: &Store, policies: &PolicySet, lists: &Lists) -> Result<ListsReport, StoreError> {
    let named = policies.ban_lists();
    let records = store.lists().all()?;
    let users_of = |names: &[String]| -> Vec<String> {
        let mut out: Vec<String> = policies
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
    let mut followed = Vec::new();
    for rec in &records {
        let mut names = rec.names.clone();
        if names.is_empty() {
            names.push(rec.room_id.to_string());
        }
        let (users, servers, ignored) = lists.counts(rec.room_id.as_str()).unwrap_or_default();
        let read = match (&rec.error, rec.read_ms) {
            (Some(e), _) => ListRead::Failed(e.clone()),
            (None, Some(t)) => ListRead::At(t),
            (None, None) => ListRead::Never,
        };
        followed.push(ListRow {
            policies: users_of(&names),
            names,
            room_id: rec.room_id.to_string(),
            users,
            servers,
            ignored,
            unavailable: lists.unavailable(rec.room_id.as_str()),
            changed_ms: rec.changed_ms,
            read,
        });
    }
    let mut unread = Vec::new();
    for name in named.iter().filter(|n| !shown.contains(n)) {
        unread.push(UnreadList {
            name: name.clone(),
            missing: store.aliases().get(name)? == Some(None),
            policies: users_of(std::slice::from_ref(name)),
        });
    }
    Ok(ListsReport { followed, unread })
}
