//! Administering policies from the control room: `policy …`, `explain`, `dry-run`.

use super::{
    command::{DryRunMode, PolicyCommand, RoomArg},
    render::ago,
    run::{Ctx, Done, block_reply, clip_block},
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
            Err(refusal) => return Ok(refusal),
        };
        let store = self.store();
        let active = self.shared.policies.current();
        let mut aliases = store.aliases_of(room_id.as_str())?;
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
        let d = &trace.decision;
        let mut m = Msg::new();
        m.text(&format!("A knock by {user} on {} ", ctx.label));
        match reason {
            Some(r) => m.text("with the reason ").quote(r),
            None => m.text("without a reason"),
        };
        m.line().text("→ ").bold(d.action.as_str());
        if self.shared.dry_run(d.dry_run) {
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
        if let Some(facts) = &account {
            m.line().text(&format!("account: {}", facts.describe()));
        }
        m.line().text(&format!("why: {}", d.explanation));
        if !trace.rules.is_empty() {
            let lines: Vec<String> = trace
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    format!("{}. {}: {}: {}", i + 1, r.rule, if r.matched { "MATCHES" } else { "no" }, r.detail)
                })
                .collect();
            m.pre(&lines.join("\n"));
        }
        Ok(Done::ok(m))
    }

    pub fn policy(&self, cmd: PolicyCommand, block: Option<String>) -> Result<Done, ActionError> {
        let live = &self.shared.policies;
        let store = self.store();
        let policy_err = |e: live_policies::PolicyError| match e {
            live_policies::PolicyError::Store(e) => ActionError::Store(e),
            other => ActionError::Permanent(other.to_string()),
        };
        Ok(match cmd {
            PolicyCommand::List => {
                let active = live.current();
                let mut m = Msg::new();
                m.bold(&format!("Policy version {} is active", active.version));
                if active.set.policies().is_empty() {
                    m.line().text("No policies: knocks are left alone.");
                }
                for s in active.set.summaries() {
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
            PolicyCommand::Show { name } => {
                let active = live.current();
                let Some(p) = active.set.policy(&name) else {
                    return Ok(Done::text(
                        false,
                        &format!("No active policy is named {name}; see !knock policy list."),
                    ));
                };
                let version = store.policy_version(active.version)?;
                let text = version
                    .and_then(|v| v.sources.into_iter().find(|s| s.path == p.file))
                    .map(|s| s.text)
                    .unwrap_or_default();
                let mut m = Msg::new();
                m.code(&name).text(&format!(" ({}), version {}:", from_where(&p.file), active.version));
                m.pre(&clip_block(&text));
                Done::ok(m)
            }
            PolicyCommand::Reload => {
                let outcome = live.reload();
                let ok = matches!(
                    outcome,
                    Ok(live_policies::Reload::Activated { .. } | live_policies::Reload::Unchanged { .. })
                );
                let text = live_policies::describe(&outcome);
                let mut done = block_reply(ok, &text);
                if matches!(outcome, Ok(live_policies::Reload::Activated { .. })) {
                    done.follow_ups.push(Action::ResolveAliases);
                    done.follow_ups.extend(crate::lists::read_actions(&live.current().set));
                }
                done
            }
            PolicyCommand::History { name } => {
                let versions = store.policy_versions()?;
                let active = store.active_policy_version()?;
                let now = now_ms();
                let mut m = Msg::new();
                let mut shown = 0;
                let mut lines = Vec::new();
                // With NAME: that policy's text in each version, to keep the versions that changed it.
                let texts: Vec<Option<&str>> = match &name {
                    Some(n) => versions
                        .iter()
                        .map(|v| v.sources.iter().find(|s| &s.policy_name() == n).map(|s| s.text.as_str()))
                        .collect(),
                    None => vec![],
                };
                for (i, v) in versions.iter().enumerate().rev() {
                    if name.is_some() && texts[i] == i.checked_sub(1).and_then(|j| texts[j]) {
                        continue;
                    }
                    shown += 1;
                    if shown > 15 {
                        break;
                    }
                    let mark = if Some(v.number) == active { " (active)" } else { "" };
                    lines.push(format!("v{}{mark} · {} · {}", v.number, ago(now, v.created_ms), v.origin));
                }
                match &name {
                    Some(n) => m.bold(&format!("Versions that changed {n}, newest first")),
                    None => m.bold("Policy versions, newest first"),
                };
                if lines.is_empty() {
                    m.line().text("none kept");
                }
                for l in lines {
                    m.line().text(&l);
                }
                m.line().text("Go back with !knock policy rollback VERSION.");
                Done::ok(m)
            }
            PolicyCommand::Rollback { version } => match live.rollback(version) {
                Ok(new) => {
                    let mut done = Done::text(
                        true,
                        &format!(
                            "Policy version {new} is active: a copy of version {version}, set by {}.",
                            self.sender
                        ),
                    );
                    done.follow_ups.push(Action::ResolveAliases);
                    done.follow_ups.extend(crate::lists::read_actions(&live.current().set));
                    done
                }
                Err(e @ (live_policies::PolicyError::NoSuchVersion(_) | live_policies::PolicyError::Stale { .. })) => {
                    block_reply(false, &e.to_string())
                }
                Err(e) => return Err(policy_err(e)),
            },
            PolicyCommand::Set { name } => {
                let Some(text) = block else {
                    return Ok(Done::text(
                        false,
                        &format!(
                            "Put the policy in a code block after the command: !knock policy set {name} then ```yaml, the policy, and ```."
                        ),
                    ));
                };
                match live.set_room_policy(&name, &text, self.sender).map_err(policy_err)? {
                    SetOutcome::Activated { version } => {
                        let mut done = Done::text(
                            true,
                            &format!(
                                "Policy {name} is set; version {version} is active (undo: !knock policy rollback {}).",
                                version - 1
                            ),
                        );
                        done.follow_ups.push(Action::ResolveAliases);
                        done.follow_ups.extend(crate::lists::read_actions(&live.current().set));
                        done
                    }
                    SetOutcome::Unchanged { version } => Done::text(
                        true,
                        &format!("Policy {name} already reads exactly so; version {version} stays active."),
                    ),
                    SetOutcome::Refused { problems } => block_reply(
                        false,
                        &format!("Policy {name} refused; nothing changed:\n{}", format_problems(&problems)),
                    ),
                    SetOutcome::FileOwned { file } => Done::text(
                        false,
                        &format!(
                            "A policy file already defines {name} ({file}); edit the file, or choose another name."
                        ),
                    ),
                    SetOutcome::NameMismatch => Done::text(
                        false,
                        &format!(
                            "The block names its policy differently; leave out `name:` or make it `name: {name}`."
                        ),
                    ),
                    SetOutcome::BadName => Done::text(
                        false,
                        &format!("`{name}` cannot name a policy: use letters, digits, - and _ (at most 64)."),
                    ),
                }
            }
        })
    }

    pub fn dry_run(&self, mode: DryRunMode) -> Result<Done, ActionError> {
        let store = self.store();
        let config = self.shared.config.dry_run;
        match mode {
            DryRunMode::On | DryRunMode::Off => {
                let on = mode == DryRunMode::On;
                store.set_dry_run_switch(on)?;
                tracing::info!(by = self.sender, on, "dry run switched");
                let mut text = format!(
                    "Dry run is now {} (set by {}): {}",
                    if on { "on" } else { "off" },
                    self.sender,
                    if on { "decisions are only reported." } else { "decisions are carried out." }
                );
                if !on && config {
                    text.push_str(" But the config's dry_run: true still holds, so nothing is carried out.");
                }
                Ok(Done::text(true, &text))
            }
            DryRunMode::Status => {
                let switch = store.dry_run_switch()?.unwrap_or(false);
                let on = config || switch;
                let switch = if switch { "on" } else { "off" };
                let text = format!(
                    "Dry run is {}: config dry_run {}, run-time switch {switch}. Policies may also set dry_run for their rooms.",
                    if on { "on" } else { "off" },
                    config
                );
                Ok(Done::text(true, &text))
            }
        }
    }
}

/// Where a policy comes from, for people.
fn from_where(path: &str) -> String {
    match live_policies::room_policy_name(path) {
        Some(_) => "set from the control room".to_owned(),
        None => format!("file {path}"),
    }
}
