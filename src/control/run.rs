//! Carrying out control-room commands and verdict reactions: the entry points, and the
//! dispatch of each command to its module (the context is [`super::ctx`], the reply
//! [`super::reply`]).
//!
//! Every command gets exactly one reply (an `m.notice` replying to it) and ends with a ✅ or
//! ❌ reaction. A verdict (approve, deny, ban) is not carried out here: it is queued as an
//! [`Action::Act`] in the knocker's lane, like a policy's decision, with ⏳ on the command;
//! the reply and the ✅ or ❌ come when it is done ([`super::verdicts`]). What each command
//! does lives by concern: [`super::targets`] (which knock a moderator means),
//! [`super::verdicts`], [`super::reports`] (pending, rooms, stats, log),
//! [`super::policy_admin`] (policy, explain, dry-run), [`super::failed`] (failed, retry).

use ruma::{EventId, UserId};

use super::{
    command::{self, Command, Parsed, Target, VerdictWords},
    ctx::Ctx,
    moderators, render,
    reply::Done,
    reports,
};
use crate::events::Verdict;
use crate::{
    app::Shared,
    notices::{self, Msg},
    runner::ActionError,
    storage::{Action, now_ms},
};

/// Runs a command sent by `sender` in message `event_id`; returns the actions to queue.
pub async fn command(
    shared: &Shared,
    event_id: &EventId,
    sender: &UserId,
    text: &str,
) -> Result<Vec<Action>, ActionError> {
    let (event_id, sender) = (event_id.as_str(), sender.as_str());
    if !moderators::is_moderator(shared, sender).await? {
        tracing::warn!(sender, "a command from someone who is not a moderator; nothing done");
        return Ok(moderators::refuse(shared, sender, event_id));
    }
    let (line, block) = command::split_block(text);
    tracing::info!(sender, command = %line.trim(), "control-room command");
    let done = match command::parse(&line) {
        Parsed::Help(help) => {
            let mut m = Msg::new();
            m.pre(&help);
            Done::ok(m)
        }
        Parsed::Error(e) => {
            let mut m = Msg::new();
            m.pre(&e);
            Done::failed(m)
        }
        Parsed::Command(cmd) => {
            let ctx = Ctx { shared, sender, reply_to: event_id, by_reaction: false };
            ctx.run(cmd, block).await?
        }
    };
    let mut out = Vec::new();
    if let Some(reply) = done.reply {
        out.push(reply.reply_to(event_id));
        out.push(notices::react(event_id, if done.ok { "✅" } else { "❌" }));
    }
    out.extend(done.follow_ups);
    Ok(out)
}

/// Handles a reaction on a control-room event: ✅ approves, ❌ denies, 🔨 bans the review
/// item whose notice it is on. Other reactions, and reactions on other events, are ignored.
pub async fn reaction(
    shared: &Shared,
    sender: &UserId,
    target: &EventId,
    key: &str,
) -> Result<Vec<Action>, ActionError> {
    let (sender, target) = (sender.as_str(), target.as_str());
    let Some(verdict) = Verdict::from_key(key) else { return Ok(vec![]) };
    let Some(item) = shared.store.reviews().by_notice(target)? else { return Ok(vec![]) };
    if !moderators::is_moderator(shared, sender).await? {
        tracing::warn!(sender, "a verdict reaction from someone who is not a moderator; nothing done");
        return Ok(moderators::refuse(shared, sender, target));
    }
    tracing::info!(sender, number = item.number, ?verdict, "verdict by reaction");
    let ctx = Ctx { shared, sender, reply_to: target, by_reaction: true };
    let outcome = ctx.decide(verdict, &Target::Review(item.number), None, None, None)?;
    let done = render::verdict(outcome, &|r| notices::room_label(&shared.store, r));
    let mut out: Vec<Action> = done.reply.map(|r| r.reply_to(target)).into_iter().collect();
    out.extend(done.follow_ups);
    Ok(out)
}

/// The edit (and, with `reply`, the reply) that reports a closed review item on its notice.
pub fn review_closed(shared: &Shared, number: u64, reply: bool) -> Result<Vec<Action>, ActionError> {
    let store = &shared.store;
    let Some(item) = store.reviews().get(number)? else { return Ok(vec![]) };
    let Some(how) = item.closed.as_ref().map(|h| h.to_string()) else { return Ok(vec![]) };
    let Some(entry) = store.audit().get(item.audit_id)? else { return Ok(vec![]) };
    let label = crate::notices::room_label(store, &item.room_id);
    let mut out = Vec::new();
    if let Some(notice) = &item.notice_event {
        let outcome = notices::verdict(entry.action, entry.dry_run);
        out.push(crate::notices::entry_notice(store, &entry, outcome, Some(number), Some(&how)).replacing(notice));
    }
    if reply {
        let mut m = Msg::new();
        m.bold(&format!("#{number}")).text(&format!(" {} on {label}: {how}", item.user_id));
        out.push(match &item.notice_event {
            Some(notice) => m.reply_to(notice),
            None => m.notice(),
        });
    }
    Ok(out)
}

impl Ctx<'_> {
    async fn run(&self, cmd: Command, block: Option<String>) -> Result<Done, ActionError> {
        Ok(match cmd {
            Command::Pending { page } => render::pending(&reports::pending(self.store(), page as usize)?, now_ms()),
            Command::Approve(words) => self.verdict_words(Verdict::Approve, &words, false).await?,
            Command::Deny(words) => self.verdict_words(Verdict::Deny, &words, true).await?,
            Command::Ban(words) => self.verdict_words(Verdict::Ban, &words, true).await?,
            Command::Explain { user, room, reason } => {
                let reason = reason.join(" ");
                self.explain(&user.0, &room, (!reason.is_empty()).then_some(reason.as_str())).await?
            }
            Command::Policy { command } => self.policy(command, block)?,
            Command::Rooms => {
                let control = self.shared.control_room_id();
                let active = self.shared.policies.current();
                let view = reports::RoomsView {
                    bot: self.shared.bot.as_str(),
                    control_room: control.as_deref().map(|c| c.as_str()),
                    policies: &active.set,
                    lists: &self.shared.lists,
                };
                let now = now_ms();
                render::rooms(&reports::rooms(self.store(), &view, now)?, now)
            }
            Command::Stats { window } => render::stats(&reports::stats(self.store(), window, now_ms())?),
            Command::Log { n } => render::log(&reports::log(self.store(), n as usize)?, now_ms()),
            Command::DryRun { mode } => self.dry_run(mode)?,
            Command::Failed { page } => render::failed(&reports::failed(self.store(), page as usize)?, now_ms()),
            Command::Lists => {
                let active = self.shared.policies.current();
                render::lists(&reports::lists(self.store(), &active.set, &self.shared.lists)?, now_ms())
            }
            Command::Retry { which } => self.retry(which)?,
            Command::Lockdown(words) => match words.parse() {
                Ok(args) => {
                    let now = now_ms();
                    render::lockdown(&self.lockdown(args, now).await?, now)
                }
                Err(e) => Done::text(false, &e),
            },
        })
    }
}

impl Ctx<'_> {
    async fn verdict_words(&self, verdict: Verdict, words: &VerdictWords, reason: bool) -> Result<Done, ActionError> {
        match words.parse(reason) {
            Ok(args) => {
                let outcome = self.verdict(verdict, args).await?;
                Ok(render::verdict(outcome, &|r| notices::room_label(self.store(), r)))
            }
            // `command::parse` read them already; kept for completeness.
            Err(e) => Ok(Done::text(false, &e)),
        }
    }
}
