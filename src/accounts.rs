//! What the homeserver says of local knockers' accounts, for `account:` conditions.
//!
//! The worker never asks the network: a knock whose policy has `account:` conditions and
//! whose knocker's account is not known waits, and a [`crate::storage::Action::LookupAccount`]
//! is queued in that knocker's lane; once it has the answer (or the failure, which decides
//! with `unknown`), the worker decides the knock. Answers are kept 10 minutes, in memory.
//! A remote knocker, or no admin token, is `unknown` at once, with why.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use ruma::{OwnedServerName, OwnedUserId, UserId};

use crate::{homeserver::AdminApi, policy::AccountFacts};

/// How long an answer is kept.
pub const KEEP_FOR_MS: u64 = 10 * 60 * 1000;

/// A lookup asked this long ago and not answered is asked again (the action was lost).
const ASK_AGAIN_AFTER_MS: u64 = 5 * 60 * 1000;

/// How often a failing admin API is logged.
const LOG_FAILURE_EVERY_MS: u64 = 60 * 1000;

/// See the module docs.
pub struct Accounts {
    admin: Option<Arc<dyn AdminApi>>,
    local: OwnedServerName,
    known: Mutex<HashMap<OwnedUserId, (u64, AccountFacts)>>,
    asked: Mutex<HashMap<OwnedUserId, u64>>,
    logged_failure_ms: AtomicU64,
}

impl Accounts {
    /// `admin`: the admin API, when a token is configured.
    pub fn new(admin: Option<Arc<dyn AdminApi>>, local: OwnedServerName) -> Self {
        Self {
            admin,
            local,
            known: Default::default(),
            asked: Default::default(),
            logged_failure_ms: AtomicU64::new(0),
        }
    }

    /// What deciding `user`'s knock can go by now; `None`: their account must be looked up
    /// first.
    pub fn facts(&self, user: &UserId, now_ms: u64) -> Option<AccountFacts> {
        if user.server_name() != self.local {
            return Some(AccountFacts::Unknown(format!("{user} is not a local user")));
        }
        if self.admin.is_none() {
            return Some(AccountFacts::Unknown("no admin token (homeserver.admin_token_file is not set)".into()));
        }
        self.known_facts(user, now_ms)
    }

    /// The answer kept for `user`, if fresh (for explanations).
    pub fn known_facts(&self, user: &UserId, now_ms: u64) -> Option<AccountFacts> {
        let known = self.known.lock();
        known.get(user).filter(|(at, _)| now_ms.saturating_sub(*at) < KEEP_FOR_MS).map(|(_, f)| f.clone())
    }

    /// Marks a lookup of `user` asked; false when one was asked lately and is not answered.
    pub fn ask(&self, user: &UserId, now_ms: u64) -> bool {
        let mut asked = self.asked.lock();
        if asked.get(user).is_some_and(|at| now_ms.saturating_sub(*at) < ASK_AGAIN_AFTER_MS) {
            return false;
        }
        asked.insert(user.to_owned(), now_ms);
        true
    }

    /// Asks the homeserver about `user`'s account and keeps the answer; a failure is kept as
    /// `unknown` (logged at most once a minute). Never fails.
    pub async fn look_up(&self, user: &UserId, now_ms: impl Fn() -> u64) -> AccountFacts {
        let facts = match &self.admin {
            None => AccountFacts::Unknown("no admin token (homeserver.admin_token_file is not set)".into()),
            Some(admin) => match admin.account(user).await {
                Ok(rec) => {
                    let now_s = now_ms() / 1000;
                    AccountFacts::Known {
                        age: rec.creation_ts.map(|t| Duration::from_secs(now_s.saturating_sub(t))),
                        shadow_banned: rec.shadow_banned.unwrap_or(false),
                        locked: rec.locked.unwrap_or(false),
                        suspended: rec.suspended.unwrap_or(false),
                    }
                }
                Err(e) => {
                    let now = now_ms();
                    let last = self.logged_failure_ms.load(Ordering::SeqCst);
                    if now.saturating_sub(last) >= LOG_FAILURE_EVERY_MS {
                        self.logged_failure_ms.store(now, Ordering::SeqCst);
                        tracing::warn!(%user, error = %e, "the admin API cannot say what the account is; deciding with `unknown` (said at most once a minute)");
                    }
                    AccountFacts::Unknown(format!("the homeserver's admin API failed: {e}"))
                }
            },
        };
        let now = now_ms();
        self.known.lock().insert(user.to_owned(), (now, facts.clone()));
        self.asked.lock().remove(user);
        // Old answers go, so the map stays as small as the knockers of 10 minutes.
        self.known.lock().retain(|_, (at, _)| now.saturating_sub(*at) < KEEP_FOR_MS);
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::homeserver::{AccountRecord, HsError};

    struct Fixed(Result<AccountRecord, u16>);

    #[async_trait::async_trait]
    impl AdminApi for Fixed {
        async fn account(&self, _: &UserId) -> Result<AccountRecord, HsError> {
            self.0.clone().map_err(|status| HsError::Api {
                status,
                errcode: "M_UNKNOWN".into(),
                message: "no".into(),
                retry_after: None,
            })
        }
    }

    fn accounts(admin: Option<Fixed>) -> Accounts {
        Accounts::new(admin.map(|a| Arc::new(a) as Arc<dyn AdminApi>), "x".try_into().unwrap())
    }

    #[tokio::test]
    async fn remote_knockers_and_no_token_are_unknown_at_once_and_answers_are_kept() {
        let local: OwnedUserId = "@a:x".try_into().unwrap();
        let remote: OwnedUserId = "@b:y".try_into().unwrap();
        let a = accounts(None);
        assert!(matches!(a.facts(&remote, 0), Some(AccountFacts::Unknown(w)) if w.contains("not a local user")));
        assert!(matches!(a.facts(&local, 0), Some(AccountFacts::Unknown(w)) if w.contains("admin_token_file")));
        let rec = AccountRecord { creation_ts: Some(1_000), shadow_banned: Some(true), ..Default::default() };
        let a = accounts(Some(Fixed(Ok(rec))));
        assert_eq!(a.facts(&local, 0), None, "to be looked up");
        assert!(a.ask(&local, 0) && !a.ask(&local, 1), "asked once");
        let facts = a.look_up(&local, || 1_060_000).await;
        assert_eq!(
            facts,
            AccountFacts::Known {
                age: Some(Duration::from_secs(60)),
                shadow_banned: true,
                locked: false,
                suspended: false
            }
        );
        assert_eq!(a.facts(&local, 1_060_000 + KEEP_FOR_MS - 1), Some(facts));
        assert_eq!(a.facts(&local, 1_060_000 + KEEP_FOR_MS), None, "kept 10 minutes");
        let failing = accounts(Some(Fixed(Err(500))));
        assert!(
            matches!(failing.look_up(&local, || 5).await, AccountFacts::Unknown(w) if w.contains("admin API failed"))
        );
    }
}
