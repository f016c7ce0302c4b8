//! `knockwarden policy check | explain | schema`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::ConfigArg;
use crate::{
    config::{Config, RawConfig},
    live_policies::{read_dir, read_files},
    policy::{Knock, PolicySet, format::schema_json, format_problems},
    storage::Store,
};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files: print every problem and exit 1, or one summary line per file.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Files or directories to check [default: the configured policy directory].
        paths: Vec<PathBuf>,
    },
    /// Show what the policies would decide for a knock, and why.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The room knocked on (ID or alias).
        #[arg(long)]
        room: String,
        /// The knocker's user ID.
        #[arg(long)]
        user: String,
        /// The knock's reason.
        #[arg(long)]
        reason: Option<String>,
        /// The knocker's display name.
        #[arg(long)]
        displayname: Option<String>,
        /// A room (ID or alias) the knocker is joined to; repeat for several.
        #[arg(long = "member-of")]
        member_of: Vec<String>,
        /// Knocks on the room in every counter window (the knock itself included).
        #[arg(long, default_value_t = 1)]
        room_knocks: u64,
        /// Knocks by the user on the room in every counter window (the knock itself included).
        #[arg(long, default_value_t = 1)]
        user_knocks: u64,
    },
    /// Print the JSON Schema of policy files.
    Schema,
}

pub fn run(cmd: &PolicyCommand) -> Result<(), String> {
    match cmd {
        PolicyCommand::Check { config, paths } => check(&config.config, paths),
        PolicyCommand::Explain { config, room, user, reason, displayname, member_of, room_knocks, user_knocks } => {
            let k = ExplainArgs {
                room,
                user,
                reason: reason.as_deref(),
                displayname: displayname.as_deref(),
                member_of,
                room_knocks: *room_knocks,
                user_knocks: *user_knocks,
            };
            explain(&config.config, &k)
        }
        PolicyCommand::Schema => {
            print!("{}", schema_json());
            Ok(())
        }
    }
}

/// The configuration without its registration (policy commands need no tokens).
fn load_config(file: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read the configuration file: {e}", file.display()))?;
    let raw = RawConfig::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    Config::from_raw(raw, file).map_err(|e| e.to_string())
}

fn check(config: &Path, paths: &[PathBuf]) -> Result<(), String> {
    let sources = if paths.is_empty() { read_dir(&load_config(config)?.policies) } else { read_files(paths) }
        .map_err(|e| e.to_string())?;
    if sources.is_empty() {
        return Err("no policy files (*.yaml) found".into());
    }
    match PolicySet::load(&sources) {
        Ok(set) => {
            for s in set.summaries() {
                println!(
                    "{}: ok: policy `{}`, {} rule{}, default {}, rooms {}{}",
                    s.path,
                    s.policy,
                    s.rules,
                    if s.rules == 1 { "" } else { "s" },
                    s.default,
                    s.rooms.join(", "),
                    if s.uses_account {
                        "; its `account:` conditions need homeserver.admin_token_file (without it they are unknown)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Err(problems) => {
            println!("{}", format_problems(&problems));
            Err(format!("{} problem{} found", problems.len(), if problems.len() == 1 { "" } else { "s" }))
        }
    }
}

struct ExplainArgs<'a> {
    room: &'a str,
    user: &'a str,
    reason: Option<&'a str>,
    displayname: Option<&'a str>,
    member_of: &'a [String],
    room_knocks: u64,
    user_knocks: u64,
}

/// Which stored version has these files, if the database can be read.
fn version_label(config: &Config, hash: &str) -> String {
    if !config.database.exists() {
        return "not stored yet (no database)".into();
    }
    match Store::open(&config.database) {
        Ok(store) => match store.policies().all() {
            Ok(versions) => match versions.iter().rev().find(|v| v.hash == hash) {
                Some(v) => {
                    let active = store.policies().active().ok().flatten() == Some(v.number);
                    format!("version {}{}", v.number, if active { " (active)" } else { "" })
                }
                None => "not stored yet: the service stores it on its next reload".into(),
            },
            Err(e) => format!("unknown ({e})"),
        },
        Err(_) => "unknown (the database is in use by a running knockwarden)".into(),
    }
}

/// What the service's stored look-ups say of `room`: for a room ID, the policies' aliases
/// that name it; for an alias, the room it names (if looked up). Err: why they cannot be read.
fn stored_names(config: &Config, set: &PolicySet, room: &str) -> Result<Vec<String>, String> {
    if !config.database.exists() {
        return Err("there is no database yet to hold the service's look-ups".into());
    }
    let store = Store::open(&config.database)
        .map_err(|_| "the database is in use by a running knockwarden, so its look-ups cannot be read".to_owned())?;
    let looked_up = |alias: &str| store.aliases().get(alias).ok().flatten().flatten();
    if room.starts_with('#') {
        return Ok(looked_up(room).into_iter().collect());
    }
    Ok(set.room_aliases().filter(|a| looked_up(a).as_deref() == Some(room)).cloned().collect())
}

/// What the homeserver's admin API says of `user`'s account, as the service would ask it.
fn account_facts(config_file: &Path, config: &Config, user: &str) -> crate::policy::AccountFacts {
    use crate::policy::AccountFacts;
    let Ok(user) = ruma::OwnedUserId::try_from(user) else {
        return AccountFacts::Unknown(format!("{user} is not a user ID"));
    };
    let token = match crate::config::Settings::load(config_file) {
        Ok(s) => s.admin_token,
        Err(e) => return AccountFacts::Unknown(format!("the admin token cannot be read: {e}")),
    };
    let admin = token.map(|t| {
        let admin =
            crate::homeserver::SynapseAdmin::new(&config.homeserver.url, t.0, config.homeserver.request_timeout);
        std::sync::Arc::new(admin) as std::sync::Arc<dyn crate::homeserver::AdminApi>
    });
    let accounts = crate::accounts::Accounts::new(admin, config.homeserver.server_name.clone());
    if let Some(facts) = accounts.facts(&user, crate::storage::now_ms()) {
        return facts;
    }
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(accounts.look_up(&user, crate::storage::now_ms)),
        Err(e) => AccountFacts::Unknown(format!("cannot start the async runtime: {e}")),
    }
}

fn explain(config_file: &Path, a: &ExplainArgs) -> Result<(), String> {
    let config = load_config(config_file)?;
    ruma::UserId::parse(a.user).map_err(|e| format!("--user: `{}` is not a user ID: {e}", a.user))?;
    let sources = read_dir(&config.policies).map_err(|e| e.to_string())?;
    let set =
        PolicySet::load(&sources).map_err(|p| format!("the policy files have problems:\n{}", format_problems(&p)))?;
    // The policies may name the room by an alias: the service's stored look-ups say which.
    let known = stored_names(&config, &set, a.room);
    let (room_id, names) = match (&known, a.room.starts_with('#')) {
        (Ok(names), true) => (names.first().cloned().unwrap_or_else(|| a.room.to_owned()), vec![a.room.to_owned()]),
        (Ok(names), false) => (a.room.to_owned(), names.clone()),
        (Err(_), _) => (a.room.to_owned(), vec![]),
    };
    let Some(policy) = set.policy_for(&room_id, &names) else {
        println!("No policy governs {}: a knock there is left alone.", a.room);
        let aliases: Vec<&String> = set.room_aliases().collect();
        if !a.room.starts_with('#') && !aliases.is_empty() {
            let why = match &known {
                Ok(_) => "the service has not looked them up to this room".to_owned(),
                Err(why) => why.clone(),
            };
            println!(
                "Note: policies name rooms by alias ({}), and {why}. Give the alias with --room, or ask `!knock explain` in the control room.",
                aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        return Ok(());
    };
    let windows = set.windows();
    let room_counts: Vec<_> = windows.iter().map(|w| (*w, a.room_knocks)).collect();
    let user_counts: Vec<_> = windows.iter().map(|w| (*w, a.user_knocks)).collect();
    // The ban lists as stored by the service (readable while it is stopped).
    let named: Vec<String> = policy.ban_lists().to_vec();
    let (lists, lists_note) = if named.is_empty() {
        (None, None)
    } else if !config.database.exists() {
        (None, Some("not read yet (no database): `ban_list` conditions do not hold".to_owned()))
    } else {
        match Store::open(&config.database).and_then(|s| crate::lists::Lists::load(&s, config.ban_lists.max_rules)) {
            Ok(l) => (Some(l), Some("the copies stored by the service".to_owned())),
            Err(_) => (
                None,
                Some(
                    "not read (the database is in use by a running knockwarden: ask `!knock explain` in the control room)"
                        .to_owned(),
                ),
            ),
        }
    };
    let view = lists.as_ref().map(|l| l.view());
    let account = policy.uses_account().then(|| account_facts(config_file, &config, a.user));
    let knock = Knock {
        user: a.user,
        room: &room_id,
        reason: a.reason,
        displayname: a.displayname,
        member_of: a.member_of,
        room_knocks: &room_counts,
        user_knocks: &user_counts,
        lists: view.as_ref().map(|v| v as &dyn crate::policy::ListSource),
        account: account.as_ref(),
        // Lockdowns are the running service's: `!knock explain` counts them.
        lockdown: false,
    };
    let trace = policy.explain(&knock);
    let d = &trace.decision;
    println!("decision: {}{}", d.action, if d.dry_run { " (dry run: nothing would be done)" } else { "" });
    println!("policy:   {} ({}), {}", d.policy, policy.file, version_label(&config, set.hash()));
    println!("rule:     {}", d.rule.as_deref().unwrap_or("none matched: the policy's default"));
    if let Some(r) = &d.reason {
        println!("reason:   {r}");
    }
    if let Some(note) = &lists_note {
        println!("lists:    {note}");
    }
    if let Some(hit) = &d.list {
        println!("ban list: {}", crate::policy::banlist::describe_hit(hit));
    }
    if let Some(facts) = &account {
        println!("account:  {}", facts.describe());
    }
    println!("why:      {}", d.explanation);
    if !trace.rules.is_empty() {
        println!("rules:");
        for (i, r) in trace.rules.iter().enumerate() {
            println!("  {}. {}: {}: {}", i + 1, r.rule, if r.matched { "MATCHES" } else { "no" }, r.detail);
        }
    }
    Ok(())
}
