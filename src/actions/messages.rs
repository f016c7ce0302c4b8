//! Posting in the control room: notices, replies, reactions, edits, review announcements.

use ruma::{OwnedEventId, OwnedRoomId, RoomId};

use crate::{
    app::Shared,
    config::Mention,
    homeserver::{HsError, notice_content},
    notices,
    runner::ActionError,
    storage::Action,
};

/// The control room, once joined (until then, posting fails transiently and is retried).
fn control_room(shared: &Shared) -> Result<OwnedRoomId, ActionError> {
    shared.control_room_id().ok_or_else(|| HsError::Transport("the control room is not joined yet".into()).into())
}

pub async fn notice(shared: &Shared, seq: u64, plain: &str, html: &str) -> Result<Vec<Action>, ActionError> {
    let control = control_room(shared)?;
    send_fitted(shared, &control, seq, "m.room.message", &notice_content(plain, html)).await?;
    Ok(vec![])
}

pub async fn send(
    shared: &Shared,
    seq: u64,
    event_type: &str,
    content: &serde_json::Value,
) -> Result<Vec<Action>, ActionError> {
    let control = control_room(shared)?;
    send_fitted(shared, &control, seq, event_type, content).await?;
    Ok(vec![])
}

/// Announces a review item; returns the notice's event (`None`: the item is gone).
pub async fn review_notice(shared: &Shared, seq: u64, number: u64) -> Result<Option<OwnedEventId>, ActionError> {
    let store = &shared.store;
    let Some(item) = store.reviews().get(number)? else { return Ok(None) };
    let Some(entry) = store.audit().get(item.audit_id)? else { return Ok(None) };
    let control = control_room(shared)?;
    let outcome = notices::verdict(entry.action, entry.dry_run);
    let msg = crate::notices::entry_notice(store, &entry, outcome, Some(number), None);
    let mentions = match shared.config.review.mention {
        Mention::None => notices::Mentions::None,
        Mention::Moderators => notices::Mentions::Users(crate::control::moderators::joined_moderators(shared)?),
        Mention::Room => notices::Mentions::Room,
    };
    let content = notices::with_mentions(msg, &mentions);
    let event = send_fitted(shared, &control, seq, "m.room.message", &content).await?;
    Ok(Some(event))
}

/// Sends a control-room message, fitted to the homeserver's event size limit
/// ([`notices::fit`]). Should the homeserver still refuse it as too large (413), it is sent
/// again, shorter each time: a reply may be cut, but it always arrives. Each try has its own
/// transaction ID (a refused one created no event); the first is `kw{seq}`, so a retried
/// action is posted once.
pub async fn send_fitted(
    shared: &Shared,
    room: &RoomId,
    seq: u64,
    event_type: &str,
    content: &serde_json::Value,
) -> Result<OwnedEventId, HsError> {
    let mut budget = notices::MAX_CONTENT_BYTES;
    let mut attempt = 0;
    loop {
        let txn = if attempt == 0 { format!("kw{seq}") } else { format!("kw{seq}-fit{attempt}") };
        let fitted = notices::fit(content, budget);
        match shared.homeserver.send(room, &txn, event_type, &fitted).await {
            Err(HsError::Api { status: 413, .. }) if budget > 1_000 => {
                let sent = serde_json::to_vec(&fitted).map(|b| b.len()).unwrap_or(budget);
                tracing::warn!(bytes = sent, "the homeserver refused a message as too large; sending it shorter");
                budget = sent.min(budget) / 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
