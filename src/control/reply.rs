//! A command's reply as data: the message, whether it succeeded (✅ or ❌), and what more to
//! queue; with the shapes replies share (blocks, the homeserver's refusals).

use crate::{homeserver::HsError, notices::Msg, storage::Action};

/// What a command came to: the reply (none yet for a queued verdict, which replies when
/// done), whether it succeeded, and more actions to queue.
pub(super) struct Done {
    pub reply: Option<Msg>,
    pub ok: bool,
    pub follow_ups: Vec<Action>,
}

impl Done {
    pub fn ok(reply: Msg) -> Self {
        Done { reply: Some(reply), ok: true, follow_ups: vec![] }
    }
    pub fn failed(reply: Msg) -> Self {
        Done { reply: Some(reply), ok: false, follow_ups: vec![] }
    }
    pub fn text(ok: bool, text: &str) -> Self {
        let mut m = Msg::new();
        m.text(text);
        Done { reply: Some(m), ok, follow_ups: vec![] }
    }
}

/// A reply whose text (e.g. policy problems) is best shown as a block.
pub(super) fn block_reply(ok: bool, text: &str) -> Done {
    let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut m = Msg::new();
    m.text(head);
    if !rest.is_empty() {
        m.pre(&clip_block(rest));
    }
    Done { reply: Some(m), ok, follow_ups: vec![] }
}

/// The homeserver's refusal, with its errcode.
pub(super) fn refused(what: &str, e: &HsError) -> Done {
    let text = match e {
        HsError::Api { errcode, message, .. } => format!("The homeserver refused to {what}: {errcode}: {message}"),
        other => format!("Could not {what}: {other}"),
    };
    Done::text(false, &text)
}

/// Longest block (policy source, problems) shown in a reply.
const MAX_BLOCK: usize = 8_000;

pub(super) fn clip_block(text: &str) -> String {
    if text.chars().count() <= MAX_BLOCK {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_BLOCK).collect();
    out.push_str("\n… (cut)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_blocks_are_cut() {
        let long = "x".repeat(MAX_BLOCK + 10);
        assert!(clip_block(&long).ends_with("… (cut)"));
        assert_eq!(clip_block("short"), "short");
    }
}
