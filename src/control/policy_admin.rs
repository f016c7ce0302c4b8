//! Administering policies from the control room: `policy …`, `explain`, `dry-run`.

use super::{
    command::{DryRunMode, PolicyCommand, RoomArg},
    ctx::Ctx,
    render::ago,
    reply::{Done, block_reply, clip_block},
};
use crate::{
    live_policies::{self, SetOutcome},
    notices::Msg,
    pipeline::knocks::{self, Context},
    policy::format_problems,
    runner::ActionError,
    storage::{Action, now_ms},
};

impl Ctx<'_> {
    pub async fn explain(
        &self,
        user: &ruma::UserId,
        room: &RoomArg,
        reason: Option<&str>,
    ) -> Result<Done, ActionError> {
        let room_id = match self.resolve_room(room).await? {
            Ok(id) => id,
            Err(refusal) => return Ok(super::render::room_refusal(&refusal)),
        };
        let store = self.store();
        let active = self.shared.policies.current();
        let mut aliases = store.aliases().of(room_id.as_str())?;
        if room.0.as_str().starts_with('#') && !aliases.iter().any(|a| a == room.0.as_str()) {
            aliases.push(room.0.to_string());
        }
        let Some(policy) = knocks::governing_policy(self.shared, &active.set, room_id.as_str(), &aliases) else {
            return Ok(Done::text(true, &format!("No policy governs {}: a knock there is left alone.", room.0)));
        };
        // The account's facts as a knock would be decided with them (asked now if not kept).
        let account = match policy.uses_account() {
            false => None,
            true => match self.shared.accounts.facts(user, now_ms()) {
                Some(f) => Some(f),
                None => Some(self.shared.accounts.look_up(user, now_ms).await),
            },
        };
        let ctx = Context::gather(store, &active.set, room_id.as_str(), &aliases, user.as_str(), now_ms(), true)?;
        let lists = self.shared.lists.view();
        let knock = ctx.knock(user.as_str(), reason, None).with_lists(&lists);
        let trace = policy.explain(&crate::policy::Knock { account: account.as_ref(), ..knock });
        drop(lists);
        let dry_run = self.shared.dry_run(trace.decision.dry_run);
        let explained = Explanation {
            user: user.to_owned(),
            room: ctx.label,
            reason: reason.map(str::to_owned),
            trace,
            dry_run,
            account,
        };
        Ok(explained.render())
    }

    /// `!knock policy …`: carried out, then rendered.
    pub fn policy(&self, cmd: PolicyCommand, block: Option<String>) -> Result<Done, ActionError> {
        let report = policy_command(&self.shared.policies, self.store(), cmd, block, self.sender)?;
        let mut done = report.render(now_ms());
        if report.activated() {
            done.follow_ups.push(Action::ResolveAliases);
            done.follow_ups.extend(crate::lists::read_actions(&self.shared.policies.current().set));
        }
        Ok(done)
    }

    /// `!knock dry-run on|off|status`: carried out, then rendered.
    pub fn dry_run(&self, mode: DryRunMode) -> Result<Done, ActionError> {
        let store = self.store();
        let config = self.shared.config.dry_run;
        let report = match mode {
            DryRunMode::On | DryRunMode::Off => {
                let on = mode == DryRunMode::On;
                store.set_dry_run_switch(on)?;
                tracing::info!(by = self.sender, on, "dry run switched");
                DryRun::Switched { on, by: self.sender.to_owned(), config }
            }
            DryRunMode::Status => DryRun::Status { config, switch: store.dry_run_switch()?.unwrap_or(false) },
        };
        Ok(report.render())
    }
}

/// What `!knock explain` found: how a knock would be decided now.
#[derive(Debug)]
pub struct Explanation {
    pub user: ruma::OwnedUserId,
    /// The room, as shown to people.
    pub room: String,
    pub reason: Option<String>,
    pub trace: crate::policy::Trace,
    /// Whether the decision would only be reported.
    pub dry_run: bool,
    pub account: Option<crate::policy::AccountFacts>,
}

impl Explanation {
    /// The reply.
    pub(super) fn render(&self) -> Done {
        let d = &self.trace.decision;
        let mut m = Msg::new();
        m.text(&format!("A knock by {} on {} ", self.user, self.room));
        match &self.reason {
            Some(r) => m.text("with the reason ").quote(r),
            None => m.text("without a reason"),
        };
        m.line().text("→ ").bold(d.action.as_str());
        if self.dry_run {
            m.text(" (dry run: only reported)");
        }
        m.text(" · rule ").code(d.rule.as_deref().unwrap_or("none matched: the default"));
        m.text(" · policy ").code(&d.policy).text(&format!(" v{}", d.version));
        if let Some(r) = &d.reason {
            m.line().text("reason sent: ").quote(r);
        }
        if let Some(hit) = &d.list {
            m.line().text(&format!("ban list: {}", crate::policy::banlist::describe_hit(hit)));
        }
        if let Some(facts) = &self.account {
            m.line().text(&format!("account: {}", facts.describe()));
        }
        m.line().text(&format!("why: {}", d.explanation));
        if !self.trace.rules.is_empty() {
            let lines: Vec<String> = self
                .trace
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    format!("{}. {}: {}: {}", i + 1, r.rule, if r.matched { "MATCHES" } else { "no" }, r.detail)
                })
                .collect();
            m.pre(&lines.join("\n"));
        }
        Done::ok(m)
    }
}

/// What a `!knock policy` command came to.
#[derive(Debug)]
pub enum PolicyReport {
    List {
        version: u64,
        summaries: Vec<crate::policy::FileSummary>,
    },
    Show {
        name: String,
        file: String,
        version: u64,
        text: String,
    },
    NoSuchPolicy {
        name: String,
    },
    Reloaded(Result<live_policies::Reload, live_policies::PolicyError>),
    History {
        name: Option<String>,
        versions: Vec<HistoryLine>,
    },
    RolledBack {
        new: u64,
        copy_of: u64,
        by: String,
    },
    RollbackRefused(String),
    /// `policy set` without a code block.
    NoBlock {
        name: String,
    },
    Set {
        name: String,
        outcome: SetOutcome,
    },
}

/// A policy version, as `!knock policy history` lists it.
#[derive(Debug)]
pub struct HistoryLine {
    pub number: u64,
    pub active: bool,
    pub created_ms: u64,
    pub origin: String,
}

/// Carries out a `!knock policy` command; needs the live policies and the stored versions.
fn policy_command(
    live: &live_policies::LivePolicies,
    store: &crate::storage::Store,
    cmd: PolicyCommand,
    block: Option<String>,
    sender: &str,
) -> Result<PolicyReport, ActionError> {
    let policy_err = |e: live_policies::PolicyError| match e {
        live_policies::PolicyError::Store(e) => ActionError::Store(e),
        other => ActionError::Permanent(other.to_string()),
    };
    Ok(match cmd {
        PolicyCommand::List => {
            let active = live.current();
            PolicyReport::List { version: active.version, summaries: active.set.summaries() }
        }
        PolicyCommand::Show { name } => {
            let active = live.current();
            let Some(p) = active.set.policy(&name) else { return Ok(PolicyReport::NoSuchPolicy { name }) };
            let text = store
                .policies()
                .get(active.version)?
                .and_then(|v| v.sources.into_iter().find(|s| s.path == p.file))
                .map(|s| s.text)
                .unwrap_or_default();
            PolicyReport::Show { name, file: p.file.clone(), version: active.version, text }
        }
        PolicyCommand::Reload => PolicyReport::Reloaded(live.reload()),
        PolicyCommand::History { name } => {
            let versions = store.policies().all()?;
            let active = store.policies().active()?;
            // With NAME: that policy's text in each version, to keep the versions that changed it.
            let texts: Vec<Option<&str>> = match &name {
                Some(n) => versions
                    .iter()
                    .map(|v| v.sources.iter().find(|s| &s.policy_name() == n).map(|s| s.text.as_str()))
                    .collect(),
                None => vec![],
            };
            let mut lines = Vec::new();
            for (i, v) in versions.iter().enumerate().rev() {
                if name.is_some() && texts[i] == i.checked_sub(1).and_then(|j| texts[j]) {
                    continue;
                }
                if lines.len() == 15 {
                    break;
                }
                let active = Some(v.number) == active;
                lines.push(HistoryLine {
                    number: v.number,
                    active,
                    created_ms: v.created_ms,
                    origin: v.origin.to_string(),
                });
            }
            PolicyReport::History { name, versions: lines }
        }
        PolicyCommand::Rollback { version } => match live.rollback(version) {
            Ok(new) => PolicyReport::RolledBack { new, copy_of: version, by: sender.to_owned() },
            Err(e @ (live_policies::PolicyError::NoSuchVersion(_) | live_policies::PolicyError::Stale { .. })) => {
                PolicyReport::RollbackRefused(e.to_string())
            }
            Err(e) => return Err(policy_err(e)),
        },
        PolicyCommand::Set { name } => match block {
            None => PolicyReport::NoBlock { name },
            Some(text) => {
                let outcome = live.set_room_policy(&name, &text, sender).map_err(policy_err)?;
                PolicyReport::Set { name, outcome }
            }
        },
    })
}

impl PolicyReport {
    /// Whether a new policy version became active (its aliases and lists are then read).
    pub fn activated(&self) -> bool {
        matches!(
            self,
            PolicyReport::Reloaded(Ok(live_policies::Reload::Activated { .. }))
                | PolicyReport::RolledBack { .. }
                | PolicyReport::Set { outcome: SetOutcome::Activated { .. }, .. }
        )
    }

    /// The reply.
    pub(super) fn render(&self, now: u64) -> Done {
        match self {
            PolicyReport::List { version, summaries } => {
                let mut m = Msg::new();
                m.bold(&format!("Policy version {version} is active"));
                if summaries.is_empty() {
                    m.line().text("No policies: knocks are left alone.");
                }
                for s in summaries {
                    m.line().code(&s.policy).text(&format!(
                        " ({}) · rooms {} · {} rule(s) · default {}",
                        from_where(&s.path),
                        s.rooms.join(", "),
                        s.rules,
                        s.default
                    ));
                }
                Done::ok(m)
            }
            PolicyReport::Show { name, file, version, text } => {
                let mut m = Msg::new();
                m.code(name).text(&format!(" ({}), version {version}:", from_where(file)));
                m.pre(&clip_block(text));
                Done::ok(m)
            }
            PolicyReport::NoSuchPolicy { name } => {
                Done::text(false, &format!("No active policy is named {name}; see !knock policy list."))
            }
            PolicyReport::Reloaded(outcome) => {
                let ok = matches!(
                    outcome,
                    Ok(live_policies::Reload::Activated { .. } | live_policies::Reload::Unchanged { .. })
                );
                block_reply(ok, &live_policies::describe(outcome))
            }
            PolicyReport::History { name, versions } => {
                let mut m = Msg::new();
                match name {
                    Some(n) => m.bold(&format!("Versions that changed {n}, newest first")),
                    None => m.bold("Policy versions, newest first"),
                };
                if versions.is_empty() {
                    m.line().text("none kept");
                }
                for v in versions {
                    let mark = if v.active { " (active)" } else { "" };
                    m.line().text(&format!("v{}{mark} · {} · {}", v.number, ago(now, v.created_ms), v.origin));
                }
                m.line().text("Go back with !knock policy rollback VERSION.");
                Done::ok(m)
            }
            PolicyReport::RolledBack { new, copy_of, by } => {
                Done::text(true, &format!("Policy version {new} is active: a copy of version {copy_of}, set by {by}."))
            }
            PolicyReport::RollbackRefused(why) => block_reply(false, why),
            PolicyReport::NoBlock { name } => Done::text(
                false,
                &format!(
                    "Put the policy in a code block after the command: !knock policy set {name} then ```yaml, the policy, and ```."
                ),
            ),
            PolicyReport::Set { name, outcome } => match outcome {
                SetOutcome::Activated { version } => Done::text(
                    true,
                    &format!(
                        "Policy {name} is set; version {version} is active (undo: !knock policy rollback {}).",
                        version - 1
                    ),
                ),
                SetOutcome::Unchanged { version } => Done::text(
                    true,
                    &format!("Policy {name} already reads exactly so; version {version} stays active."),
                ),
                SetOutcome::Refused { problems } => block_reply(
                    false,
                    &format!("Policy {name} refused; nothing changed:\n{}", format_problems(problems)),
                ),
                SetOutcome::FileOwned { file } => Done::text(
                    false,
                    &format!("A policy file already defines {name} ({file}); edit the file, or choose another name."),
                ),
                SetOutcome::NameMismatch => Done::text(
                    false,
                    &format!("The block names its policy differently; leave out `name:` or make it `name: {name}`."),
                ),
                SetOutcome::BadName => Done::text(
                    false,
                    &format!("`{name}` cannot name a policy: use letters, digits, - and _ (at most 64)."),
                ),
            },
        }
    }
}

/// What a `!knock dry-run` command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    Switched { on: bool, by: String, config: bool },
    Status { config: bool, switch: bool },
}

impl DryRun {
    /// The reply.
    pub(super) fn render(&self) -> Done {
        let text = match self {
            DryRun::Switched { on, by, config } => {
                let mut text = format!(
                    "Dry run is now {} (set by {by}): {}",
                    if *on { "on" } else { "off" },
                    if *on { "decisions are only reported." } else { "decisions are carried out." }
                );
                if !on && *config {
                    text.push_str(" But the config's dry_run: true still holds, so nothing is carried out.");
                }
                text
            }
            DryRun::Status { config, switch } => format!(
                "Dry run is {}: config dry_run {config}, run-time switch {}. Policies may also set dry_run for their rooms.",
                if *config || *switch { "on" } else { "off" },
                if *switch { "on" } else { "off" },
            ),
        };
        Done::text(true, &text)
    }
}

/// Where a policy comes from, for people.
fn from_where(path: &str) -> String {
    match live_policies::room_policy_name(path) {
        Some(_) => "set from the control room".to_owned(),
        None => format!("file {path}"),
    }
}
