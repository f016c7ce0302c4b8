//! The `!knock` command syntax (a contract: docs and tests rely on it), parsed with clap from
//! the words of a message. Pure: no I/O.
//!
//! `policy set NAME` takes its YAML from a code block in the same message; [`split_block`]
//! takes the block out before the words are parsed.

use clap::{Parser, Subcommand, ValueEnum};

/// One command line.
#[derive(Debug, Parser, PartialEq)]
#[command(
    name = "!knock",
    disable_version_flag = true,
    arg_required_else_help = true,
    color = clap::ColorChoice::Never,
    term_width = 100,
    about = "Knockwarden moderates knocks by policy; these commands steer it from the control room."
)]
pub struct Line {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand, PartialEq)]
pub enum Command {
    /// List the open review items: number, user, room, reason, age.
    Pending {
        /// Page of 20 items (1 is the first).
        #[arg(default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        page: u64,
    },
    /// Accept knocks: invite the knockers.
    #[command(override_usage = "!knock approve <TARGET>... [ROOM] [--yes]", long_about = VERDICT_HELP)]
    Approve(VerdictWords),
    /// Deny knocks: kick the knockers, with a reason.
    #[command(override_usage = "!knock deny <TARGET>... [ROOM] [REASON]... [--yes]", long_about = VERDICT_HELP)]
    Deny(VerdictWords),
    /// Ban the knockers from the room, with a reason.
    #[command(override_usage = "!knock ban <TARGET>... [ROOM] [REASON]... [--yes]", long_about = VERDICT_HELP)]
    Ban(VerdictWords),
    /// Lockdown: knocks stay open, but none is accepted by policy while it lasts.
    #[command(override_usage = "!knock lockdown [<ROOM|all> [DURATION]]\n       !knock lockdown off <ROOM|all>", long_about = LOCKDOWN_HELP)]
    Lockdown(LockdownWords),
    /// What the active policies would decide for a knock, and why.
    Explain {
        /// The knocker, `@user:server`.
        user: UserArg,
        /// The room (ID or alias).
        room: RoomArg,
        /// The knock's reason.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        reason: Vec<String>,
    },
    /// Manage policies: list, show, reload, history, rollback, set.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The managed rooms: join rule, version, the bot's powers, governing policy, pending count.
    Rooms,
    /// Knocks by decision and outcome, pending count, median time to resolve a review.
    Stats {
        #[arg(value_enum, default_value_t = Window::Day)]
        window: Window,
    },
    /// The last N audit entries.
    Log {
        #[arg(default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
        n: u16,
    },
    /// Switch dry run (decisions are only reported) at run time, or see whether it is on.
    DryRun {
        #[arg(value_enum)]
        mode: DryRunMode,
    },
    /// The ban lists followed: rule counts, last change, which policies use them.
    Lists,
    /// The actions knockwarden gave up on (refused, failing for too long), and why.
    Failed {
        /// Page of 20 entries (1 is the first).
        #[arg(default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        page: u64,
    },
    /// Put failed actions back in the queue: one by number, or all.
    Retry {
        /// `N` (as `!knock failed` numbers them) or `all`.
        which: Retry,
    },
}

impl Command {
    /// Reads what clap leaves as words (verdicts, lockdown): the subcommand's name and what
    /// is wrong, for a usage error.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some((name, words, reason)) = self.verdict() {
            words.parse(reason).map_err(|e| (name, e))?;
        }
        if let Command::Lockdown(words) = self {
            words.parse().map_err(|e| ("lockdown", e))?;
        }
        Ok(())
    }

    /// For `approve`, `deny` and `ban`: the subcommand's name, its words, and whether it takes
    /// a reason.
    pub fn verdict(&self) -> Option<(&'static str, &VerdictWords, bool)> {
        match self {
            Command::Approve(w) => Some(("approve", w, false)),
            Command::Deny(w) => Some(("deny", w, true)),
            Command::Ban(w) => Some(("ban", w, true)),
            _ => None,
        }
    }
}

/// What `!knock retry` puts back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    One(u64),
    All,
}

impl std::str::FromStr for Retry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Retry::All);
        }
        s.strip_prefix('#')
            .unwrap_or(s)
            .parse()
            .map(Retry::One)
            .map_err(|_| format!("expected a failed action's number (as !knock failed shows it) or `all`, not `{s}`"))
    }
}

/// `!knock policy …`
#[derive(Debug, Subcommand, PartialEq)]
pub enum PolicyCommand {
    /// The active policies: name, where each comes from, rooms, rules.
    List,
    /// One policy's source.
    Show { name: String },
    /// Read the policy files again.
    Reload,
    /// Stored versions, newest first (only those that changed NAME, if given).
    History { name: Option<String> },
    /// Make an earlier version active again.
    Rollback {
        #[arg(value_parser = parse_version)]
        version: u64,
    },
    /// Add or replace a policy with the YAML code block that follows in the same message.
    Set { name: String },
}

/// Time window of `!knock stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Window {
    #[value(name = "24h")]
    Day,
    #[value(name = "7d")]
    Week,
    #[value(name = "30d")]
    Month,
}

impl Window {
    pub fn millis(self) -> u64 {
        let days = match self {
            Window::Day => 1,
            Window::Week => 7,
            Window::Month => 30,
        };
        days * 86_400_000
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRunMode {
    On,
    Off,
    Status,
}

/// Which knock a moderator means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A review item number.
    Review(u64),
    /// A user ID, perhaps without its server (then the homeserver's own is meant).
    User(String),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n = s.strip_prefix('#').unwrap_or(s);
        if let Ok(n) = n.parse::<u64>() {
            return Ok(Target::Review(n));
        }
        if s.starts_with('@') && s.len() > 1 {
            return Ok(Target::User(s.to_owned()));
        }
        Err(format!("expected a review number (#12 or 12) or a user (@name or @name:server), not `{s}`"))
    }
}

impl Target {
    /// The user ID, completed with `server` when it has no server part.
    pub fn user_id(user: &str, server: &str) -> Result<ruma::OwnedUserId, String> {
        let full = if user.contains(':') { user.to_owned() } else { format!("{user}:{server}") };
        ruma::OwnedUserId::try_from(full.as_str()).map_err(|e| format!("`{user}` is not a user ID: {e}"))
    }
}

/// What `lockdown` says of itself (`--help`).
const LOCKDOWN_HELP: &str = "Lockdown during a wave: a room in lockdown keeps knocking open, but every \
knock its policy would accept is held for review instead (deny, ban, review and ignore are \
unchanged).

  !knock lockdown ROOM [DURATION]   put ROOM (an ID or alias) in lockdown for DURATION (default 1h: 30m, 2h, 1d)
  !knock lockdown all [DURATION]    the same for every room knockwarden manages
  !knock lockdown off ROOM|all      end it
  !knock lockdown                   the rooms in lockdown, and when each ends

A policy rule with `lockdown: DURATION` puts the room in lockdown when it matches a knock. \
Lockdowns are kept across restarts; the control room is told when one begins and ends.";

/// The words of `lockdown`, as clap takes them; [`LockdownWords::parse`] reads them.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LockdownWords {
    /// `ROOM` or `all`, then a DURATION; or `off`, then `ROOM` or `all`.
    #[arg(num_args = 0..=2, value_name = "ROOM|all|off")]
    pub words: Vec<String>,
}

/// Which rooms a lockdown command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockdownRooms {
    One(RoomArg),
    /// Every managed room (to begin), or every room in lockdown (to end).
    All,
}

/// What `lockdown` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockdownArgs {
    /// The rooms in lockdown.
    List,
    Begin {
        rooms: LockdownRooms,
        length: std::time::Duration,
    },
    End {
        rooms: LockdownRooms,
    },
}

/// How long `!knock lockdown ROOM` lasts when it says nothing.
pub const DEFAULT_LOCKDOWN: std::time::Duration = std::time::Duration::from_secs(3600);

impl LockdownWords {
    pub fn parse(&self) -> Result<LockdownArgs, String> {
        let rooms = |w: &str| -> Result<LockdownRooms, String> {
            if w.eq_ignore_ascii_case("all") { Ok(LockdownRooms::All) } else { w.parse().map(LockdownRooms::One) }
        };
        match self.words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [] => Ok(LockdownArgs::List),
            ["off"] => Err("`lockdown off` needs a room (an ID or alias) or `all`".to_owned()),
            ["off", which] => Ok(LockdownArgs::End { rooms: rooms(which)? }),
            [which] => Ok(LockdownArgs::Begin { rooms: rooms(which)?, length: DEFAULT_LOCKDOWN }),
            [which, length] => {
                let length = crate::duration::parse(length).map_err(|e| format!("`{length}`: {e}"))?;
                if length.is_zero() {
                    return Err("a lockdown lasts longer than 0s: `lockdown off` ends one".to_owned());
                }
                Ok(LockdownArgs::Begin { rooms: rooms(which)?, length })
            }
            _ => Err("expected at most two words: ROOM|all [DURATION], or off ROOM|all".to_owned()),
        }
    }
}

/// What `approve`, `deny` and `ban` say about their targets (`--help`).
const VERDICT_HELP: &str = "Carry out a verdict on one knock or many.

TARGET, one or more:
  #N or N          a review item (as !knock pending numbers them)
  #N-#M or N-M     every pending review item from #N to #M
  @user[:server]   that user's pending knock (the homeserver's own server if none is given)
  all              every pending review item (in ROOM, when ROOM is given)
  from SERVER      every pending review item whose knocker is on SERVER (evil.example)

The first word that is none of these starts ROOM (a room ID or alias: the room, when a user \
knocks on several, or to keep `all` to one room) and then, for deny and ban, the REASON. \
`all` and `from` that name more than 20 knocks are carried out only with --yes. Each knock \
is carried out in its knocker's turn and closes its own review item; several targets get one \
reply summing up what was done.";

/// The words of `approve`, `deny` and `ban`, as clap takes them; [`VerdictWords::parse`]
/// reads them.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct VerdictWords {
    /// Carry out `all` or `from` even when they name more than 20 knocks.
    #[arg(long)]
    pub yes: bool,
    /// The targets (see above), then the room and the reason.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "TARGET")]
    pub words: Vec<String>,
}

/// Which knocks a verdict is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One knock: a review item, or a user's pending knock.
    One(Target),
    /// The pending review items numbered `first..=last`.
    Range { first: u64, last: u64 },
    /// Every pending review item (in the command's room, if it names one).
    All,
    /// Every pending review item whose knocker is on this server.
    From(ruma::OwnedServerName),
}

/// A verdict's arguments, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictArgs {
    pub targets: Vec<Selector>,
    pub room: Option<RoomArg>,
    pub reason: Option<String>,
    /// `--yes`: carry out `all` or `from` over 20 knocks.
    pub yes: bool,
}

impl VerdictArgs {
    /// The one knock the verdict is on, when it names exactly one (`#N` or `@user`): its
    /// replies are those of a single verdict.
    pub fn single(&self) -> Option<&Target> {
        match self.targets.as_slice() {
            [Selector::One(t)] => Some(t),
            _ => None,
        }
    }
}

impl VerdictWords {
    /// Reads the targets, then the room and (with `reason`) the reason: the first word that
    /// is no target starts them. `--yes` may come anywhere.
    pub fn parse(&self, reason: bool) -> Result<VerdictArgs, String> {
        let yes = self.yes || self.words.iter().any(|w| w == "--yes");
        let words: Vec<&str> = self.words.iter().map(String::as_str).filter(|w| *w != "--yes").collect();
        let mut targets = Vec::new();
        let mut i = 0;
        while let Some(&w) = words.get(i) {
            let server = words.get(i + 1).and_then(|s| server_name(s));
            match (w, server) {
                (w, _) if w.eq_ignore_ascii_case("all") => targets.push(Selector::All),
                ("from", Some(server)) => {
                    targets.push(Selector::From(server));
                    i += 1;
                }
                (w, _) => match range(w) {
                    Some(Ok((first, last))) => targets.push(Selector::Range { first, last }),
                    Some(Err(e)) => return Err(e),
                    None => match w.parse::<Target>() {
                        Ok(t) => targets.push(Selector::One(t)),
                        Err(e) if targets.is_empty() => return Err(e),
                        Err(_) => break,
                    },
                },
            }
            i += 1;
        }
        let rest: Vec<String> = words[i..].iter().map(|w| (*w).to_owned()).collect();
        let (room, reason) = if reason {
            room_and_reason(&rest)
        } else {
            match rest.as_slice() {
                [] => (None, None),
                [room] => (Some(room.parse::<RoomArg>()?), None),
                [_, extra, ..] => return Err(format!("unexpected argument '{extra}': approve takes no reason")),
            }
        };
        Ok(VerdictArgs { targets, room, reason, yes })
    }
}

/// A server name after `from`: one with a dot, a port or an IP literal (`evil.example`,
/// `host:8448`, `[::1]`), so that `deny #2 from far away` keeps its reason whole.
fn server_name(word: &str) -> Option<ruma::OwnedServerName> {
    word.contains(['.', ':', '[']).then(|| ruma::OwnedServerName::try_from(word).ok()).flatten()
}

/// `#N-#M` or `N-M`: `None` when the word is no range.
fn range(word: &str) -> Option<Result<(u64, u64), String>> {
    let (a, b) = word.split_once('-')?;
    let number = |s: &str| s.strip_prefix('#').unwrap_or(s).parse::<u64>().ok();
    let (first, last) = (number(a)?, number(b)?);
    Some(if first <= last {
        Ok((first, last))
    } else {
        Err(format!("the range {word} runs backwards: write #{last}-#{first}"))
    })
}

/// A room ID (`!id:server`, or `!id` in room version 12) or alias (`#alias:server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomArg(pub ruma::OwnedRoomOrAliasId);

impl std::str::FromStr for RoomArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with(['!', '#']) {
            return Err(format!("expected a room ID (!id:server) or alias (#name:server), not `{s}`"));
        }
        ruma::OwnedRoomOrAliasId::try_from(s).map(RoomArg).map_err(|e| format!("`{s}` is not a room ID or alias: {e}"))
    }
}

/// A full user ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserArg(pub ruma::OwnedUserId);

impl std::str::FromStr for UserArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ruma::OwnedUserId::try_from(s).map(UserArg).map_err(|e| format!("`{s}` is not a user ID (@name:server): {e}"))
    }
}

fn parse_version(s: &str) -> Result<u64, String> {
    s.trim_start_matches(['v', 'V']).parse().map_err(|_| format!("expected a version number such as 12, not `{s}`"))
}

/// Splits `deny`/`ban` arguments into an optional room (a first word that is a room ID or
/// alias) and the reason (the rest, if any).
pub fn room_and_reason(rest: &[String]) -> (Option<RoomArg>, Option<String>) {
    let (room, words) = match rest.first().map(|w| w.parse::<RoomArg>()) {
        Some(Ok(room)) => (Some(room), &rest[1..]),
        _ => (None, rest),
    };
    let reason = words.join(" ");
    (room, (!reason.trim().is_empty()).then_some(reason))
}

/// What a message asks: a parsed command, or clap's answer (help or a usage error), which is
/// what the sender sees.
#[derive(Debug)]
pub enum Parsed {
    Command(Command),
    /// Help text (asked for, or shown for a bare `!knock`).
    Help(String),
    /// A usage error, with clap's suggestion of the closest command.
    Error(String),
}

/// Parses the words of a command line (without the `!knock` prefix).
pub fn parse(line: &str) -> Parsed {
    let words = std::iter::once("!knock").chain(line.split_whitespace());
    match Line::try_parse_from(words) {
        Ok(l) => match l.command.check() {
            Ok(()) => Parsed::Command(l.command),
            Err((name, e)) => {
                let mut line = <Line as clap::CommandFactory>::command();
                let sub = line.find_subcommand_mut(name).expect("a subcommand");
                let e = clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n")).format(sub);
                let text = e.render().to_string().replace("try '--help'", "try '!knock help'");
                Parsed::Error(text.trim_end().to_owned())
            }
        },
        Err(e) => {
            use clap::error::ErrorKind::*;
            let text = e.render().to_string().replace("try '--help'", "try '!knock help'");
            let text = text.trim_end().to_owned();
            match e.kind() {
                DisplayHelp | DisplayHelpOnMissingArgumentOrSubcommand | DisplayVersion => Parsed::Help(text),
                _ => Parsed::Error(text),
            }
        }
    }
}

/// Takes a fenced code block (```` ``` ````, optionally tagged `yaml`) out of a message: the
/// text before it, and the block's content.
pub fn split_block(text: &str) -> (String, Option<String>) {
    let Some(start) = text.find("```") else { return (text.to_owned(), None) };
    let before = text[..start].to_owned();
    let after = &text[start + 3..];
    // The info string (e.g. `yaml`) runs to the end of the opening line.
    let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
    let body = &after[body_start..];
    let content = match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    };
    (before, Some(content.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cmd(line: &str) -> Command {
        match parse(line) {
            Parsed::Command(c) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        match parse(line) {
            Parsed::Error(e) => e,
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    fn room(s: &str) -> RoomArg {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(cmd("pending"), Command::Pending { page: 1 });
        assert_eq!(cmd("pending 3"), Command::Pending { page: 3 });
        assert!(matches!(cmd("approve #12"), Command::Approve(_)));
        assert!(matches!(cmd("deny #3 not today, sorry"), Command::Deny(_)));
        assert!(matches!(cmd("ban @x:evil.example"), Command::Ban(_)));
        assert_eq!(
            cmd("explain @a:b.org !room:b.org let me in"),
            Command::Explain {
                user: UserArg("@a:b.org".try_into().unwrap()),
                room: room("!room:b.org"),
                reason: vec!["let".into(), "me".into(), "in".into()]
            }
        );
        assert_eq!(cmd("policy list"), Command::Policy { command: PolicyCommand::List });
        assert_eq!(
            cmd("policy show support"),
            Command::Policy { command: PolicyCommand::Show { name: "support".into() } }
        );
        assert_eq!(cmd("policy reload"), Command::Policy { command: PolicyCommand::Reload });
        assert_eq!(cmd("policy history"), Command::Policy { command: PolicyCommand::History { name: None } });
        assert_eq!(
            cmd("policy history support"),
            Command::Policy { command: PolicyCommand::History { name: Some("support".into()) } }
        );
        assert_eq!(cmd("policy rollback 4"), Command::Policy { command: PolicyCommand::Rollback { version: 4 } });
        assert_eq!(cmd("policy rollback v4"), Command::Policy { command: PolicyCommand::Rollback { version: 4 } });
        assert_eq!(cmd("policy set lobby"), Command::Policy { command: PolicyCommand::Set { name: "lobby".into() } });
        assert_eq!(cmd("rooms"), Command::Rooms);
        assert_eq!(cmd("stats"), Command::Stats { window: Window::Day });
        assert_eq!(cmd("stats 7d"), Command::Stats { window: Window::Week });
        assert_eq!(cmd("stats 30d"), Command::Stats { window: Window::Month });
        assert_eq!(cmd("log"), Command::Log { n: 10 });
        assert_eq!(cmd("failed"), Command::Failed { page: 1 });
        assert_eq!(cmd("lists"), Command::Lists);
        assert_eq!(cmd("retry 3"), Command::Retry { which: Retry::One(3) });
        assert_eq!(cmd("retry all"), Command::Retry { which: Retry::All });
        assert_eq!(cmd("log 25"), Command::Log { n: 25 });
        assert_eq!(cmd("dry-run on"), Command::DryRun { mode: DryRunMode::On });
        assert_eq!(cmd("dry-run off"), Command::DryRun { mode: DryRunMode::Off });
        assert_eq!(cmd("dry-run status"), Command::DryRun { mode: DryRunMode::Status });
    }

    #[test]
    fn deny_and_ban_take_an_optional_room_then_the_reason() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(room_and_reason(&args("")), (None, None));
        assert_eq!(room_and_reason(&args("spam bot")), (None, Some("spam bot".into())));
        assert_eq!(room_and_reason(&args("#lobby:example.org")), (Some(room("#lobby:example.org")), None));
        assert_eq!(
            room_and_reason(&args("!r:example.org go away")),
            (Some(room("!r:example.org")), Some("go away".into()))
        );
        // A hashtag is not a room: aliases have a server part.
        assert_eq!(room_and_reason(&args("#spam wave")), (None, Some("#spam wave".into())));
        // `--flag`-looking words are part of the reason.
        let a = verdict("deny 3 --because");
        assert_eq!(a.targets, vec![Selector::One(Target::Review(3))]);
        assert_eq!(a.reason.as_deref(), Some("--because"));
    }

    fn verdict(line: &str) -> VerdictArgs {
        let c = cmd(line);
        let (_, words, reason) = c.verdict().expect("a verdict");
        words.parse(reason).unwrap()
    }

    #[test]
    fn verdicts_take_one_target_or_many_then_the_room_and_reason() {
        let one = |t| vec![Selector::One(t)];
        let a = verdict("approve #12");
        assert_eq!((a.targets, a.room, a.reason, a.yes), (one(Target::Review(12)), None, None, false));
        assert_eq!(verdict("approve 12").targets, one(Target::Review(12)));
        let a = verdict("approve @alice:example.org #lobby:example.org");
        assert_eq!(a.targets, one(Target::User("@alice:example.org".into())));
        assert_eq!(a.room, Some(room("#lobby:example.org")));
        assert_eq!(verdict("approve @alice").single(), Some(&Target::User("@alice".into())));
        let d = verdict("deny #3 not today, sorry");
        assert_eq!((d.targets, d.reason.as_deref()), (one(Target::Review(3)), Some("not today, sorry")));
        let b = verdict("ban @x:evil.example");
        assert_eq!((b.targets, b.reason), (one(Target::User("@x:evil.example".into())), None));

        let a = verdict("approve #3-#7 12 4-5");
        assert_eq!(
            a.targets,
            vec![
                Selector::Range { first: 3, last: 7 },
                Selector::One(Target::Review(12)),
                Selector::Range { first: 4, last: 5 }
            ]
        );
        assert_eq!(a.single(), None);
        let d = verdict("deny from evil.example !r:example.org spam wave");
        assert_eq!(d.targets, vec![Selector::From("evil.example".try_into().unwrap())]);
        assert_eq!((d.room, d.reason.as_deref()), (Some(room("!r:example.org")), Some("spam wave")));
        let b = verdict("ban @a:x @b:y bots");
        assert_eq!(
            b.targets,
            vec![Selector::One(Target::User("@a:x".into())), Selector::One(Target::User("@b:y".into()))]
        );
        assert_eq!(b.reason.as_deref(), Some("bots"));
        let d = verdict("deny all #lobby:example.org --yes");
        assert_eq!(
            (d.targets, d.room, d.reason, d.yes),
            (vec![Selector::All], Some(room("#lobby:example.org")), None, true)
        );
        assert!(verdict("deny --yes ALL").yes);
        // `from` before a word that is no server name is the reason's first word.
        let d = verdict("deny #2 from far away");
        assert_eq!((d.targets, d.reason.as_deref()), (one(Target::Review(2)), Some("from far away")));
        // The first word that is no target starts the reason, even where a later one is.
        let d = verdict("deny #2 spam 12");
        assert_eq!(d.reason.as_deref(), Some("spam 12"));
    }

    #[test]
    fn lockdown_takes_a_room_or_all_a_duration_or_off() {
        let lockdown = |line: &str| match cmd(line) {
            Command::Lockdown(w) => w.parse().unwrap(),
            other => panic!("{other:?}"),
        };
        let hour = DEFAULT_LOCKDOWN;
        assert_eq!(lockdown("lockdown"), LockdownArgs::List);
        assert_eq!(
            lockdown("lockdown #lobby:example.org"),
            LockdownArgs::Begin { rooms: LockdownRooms::One(room("#lobby:example.org")), length: hour }
        );
        assert_eq!(
            lockdown("lockdown all 30m"),
            LockdownArgs::Begin { rooms: LockdownRooms::All, length: Duration::from_secs(1800) }
        );
        assert_eq!(lockdown("lockdown off ALL"), LockdownArgs::End { rooms: LockdownRooms::All });
        assert_eq!(
            lockdown("lockdown off !r:example.org"),
            LockdownArgs::End { rooms: LockdownRooms::One(room("!r:example.org")) }
        );
        assert!(error("lockdown off").contains("needs a room"));
        assert!(error("lockdown lobby").contains("expected a room ID"));
        assert!(error("lockdown all soon").contains("`soon`"));
        assert!(error("lockdown all 0s").contains("0s"));
        let e = error("lockdown a b c");
        assert!(e.contains("unexpected value 'c'"), "{e}");
    }

    #[test]
    fn malformed_bulk_verdicts_say_what_is_wrong() {
        let e = error("deny #7-#3");
        assert!(e.contains("runs backwards") && e.contains("#3-#7"), "{e}");
        let e = error("approve all lobby");
        assert!(e.contains("expected a room ID"), "{e}");
        let e = error("deny lobby");
        assert!(e.contains("expected a review number"), "{e}");
    }

    #[test]
    fn help_is_clap_s() {
        let Parsed::Help(top) = parse("help") else { panic!() };
        assert!(top.contains("approve") && top.contains("dry-run") && top.contains("Usage: !knock"), "{top}");
        let Parsed::Help(approve) = parse("help approve") else { panic!() };
        assert!(approve.contains("Usage: !knock approve <TARGET>... [ROOM]"), "{approve}");
        assert!(approve.contains("from SERVER") && approve.contains("--yes"), "{approve}");
        let Parsed::Help(lockdown) = parse("help lockdown") else { panic!() };
        assert!(lockdown.contains("Usage: !knock lockdown") && lockdown.contains("off ROOM|all"), "{lockdown}");
        assert!(lockdown.contains("default 1h") && lockdown.contains("`lockdown: DURATION`"), "{lockdown}");
        let Parsed::Help(bare) = parse("") else { panic!() };
        assert!(bare.contains("Usage: !knock"));
        assert!(matches!(parse("deny --help"), Parsed::Help(_)));
        assert!(matches!(parse("policy help set"), Parsed::Help(_)));
    }

    #[test]
    fn malformed_commands_say_what_is_wrong() {
        let e = error("aprove 3");
        assert!(e.contains("unrecognized subcommand 'aprove'") && e.contains("'approve'"), "{e}");
        assert!(e.contains("try '!knock help'"), "{e}");
        let e = error("approve");
        assert!(e.contains("required") && e.contains("<TARGET>"), "{e}");
        let e = error("approve alice");
        assert!(e.contains("expected a review number"), "{e}");
        let e = error("approve 3 lobby");
        assert!(e.contains("expected a room ID"), "{e}");
        let e = error("approve 3 !r:example.org extra");
        assert!(e.contains("unexpected argument 'extra'"), "{e}");
        let e = error("explain alice !r:example.org");
        assert!(e.contains("not a user ID"), "{e}");
        let e = error("explain @alice:example.org");
        assert!(e.contains("<ROOM>"), "{e}");
        let e = error("stats 1y");
        assert!(e.contains("24h") && e.contains("30d"), "{e}");
        let e = error("log 0");
        assert!(e.contains("0"), "{e}");
        let e = error("log many");
        assert!(e.contains("many"), "{e}");
        let e = error("dry-run maybe");
        assert!(e.contains("on") && e.contains("status"), "{e}");
        let e = error("policy rollback latest");
        assert!(e.contains("version number"), "{e}");
        let e = error("policy sho x");
        assert!(e.contains("'show'"), "{e}");
        let e = error("policy set");
        assert!(e.contains("<NAME>"), "{e}");
        let e = error("pending 0");
        assert!(e.contains("0"), "{e}");
        let e = error("rooms all");
        assert!(e.contains("unexpected argument"), "{e}");
    }

    #[test]
    fn user_ids_are_completed_with_the_homeserver_s_name() {
        assert_eq!(Target::user_id("@alice", "example.org").unwrap().as_str(), "@alice:example.org");
        assert_eq!(Target::user_id("@alice:other.net", "example.org").unwrap().as_str(), "@alice:other.net");
        assert!(Target::user_id("@alice:", "example.org").is_err());
    }

    #[test]
    fn code_blocks_are_taken_out() {
        let (before, block) = split_block("policy set lobby\n```yaml\nrooms: [\"*\"]\ndefault: review\n```\nthanks");
        assert_eq!(before, "policy set lobby\n");
        assert_eq!(block.as_deref(), Some("rooms: [\"*\"]\ndefault: review\n"));
        assert_eq!(split_block("policy list"), ("policy list".to_owned(), None));
        // An unclosed block runs to the end.
        assert_eq!(split_block("set x\n```\na: 1").1.as_deref(), Some("a: 1"));
    }

    mod property {
        use proptest::prelude::*;

        use super::super::*;
        use crate::events::command_text;

        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "pending",
                    "approve",
                    "deny",
                    "ban",
                    "explain",
                    "policy",
                    "set",
                    "show",
                    "history",
                    "rollback",
                    "list",
                    "reload",
                    "rooms",
                    "stats",
                    "log",
                    "dry-run",
                    "failed",
                    "lists",
                    "retry",
                    "all",
                    "on",
                    "off",
                    "help",
                    "--help",
                    "-h",
                    "#3",
                    "3",
                    "0",
                    "-1",
                    "99999999999999999999",
                    "@u:x",
                    "!r:x",
                    "#a:x",
                    "24h",
                    "```",
                    "```yaml",
                    "\n",
                    "--",
                    "\u{0}",
                    "\u{202e}",
                ])
                .prop_map(str::to_owned),
                ".{0,12}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            /// Whatever a member types, the command parser answers (a command, help or an
            /// error) and never panics, and the answer fits in one event once fitted.
            #[test]
            fn any_message_is_parsed_or_refused(words in prop::collection::vec(word(), 0..10)) {
                let body = format!("!knock {}", words.join(" "));
                let message = crate::events::Message { msgtype: Some("m.text".into()), body: Some(body), ..Default::default() };
                let text = command_text(&message, "@kw:x").expect("starts with !knock");
                let (line, _block) = split_block(&text);
                let reply = match parse(&line) {
                    Parsed::Command(_) => return Ok(()),
                    Parsed::Help(t) | Parsed::Error(t) => t,
                };
                let content = crate::homeserver::notice_content(&reply, &crate::notices::escape(&reply));
                let fitted = crate::notices::fit(&content, 4_000);
                prop_assert!(serde_json::to_vec(&fitted).unwrap().len() <= 4_000);
            }

            /// Any text at all, command or not.
            #[test]
            fn any_text_is_safe(body in ".{0,200}") {
                let message = crate::events::Message { msgtype: Some("m.text".into()), body: Some(body), ..Default::default() };
                if let Some(text) = command_text(&message, "@kw:x") {
                    let _ = parse(&split_block(&text).0);
                }
            }
        }
    }
}
