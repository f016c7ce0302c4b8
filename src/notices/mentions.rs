//! Who a review notice mentions (`review.mention`): nobody, the moderators (in
//! `m.mentions.user_ids`, and as pills in the HTML), or the whole control room
//! (`m.mentions.room`), so that moderators who muted the room are still told.

use ruma::OwnedUserId;
use serde_json::{Value, json};

use super::{Msg, escape};
use crate::homeserver::notice_content;

/// Who a notice mentions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mentions {
    None,
    Users(Vec<OwnedUserId>),
    Room,
}

/// A notice's content with its mentions: the mentioned named in the text too (pills in the
/// HTML), as the spec asks of intentional mentions.
pub fn content(mut msg: Msg, mentions: &Mentions) -> Value {
    match mentions {
        Mentions::None => notice_content(&msg.plain, &msg.html),
        Mentions::Users(users) if users.is_empty() => notice_content(&msg.plain, &msg.html),
        Mentions::Users(users) => {
            let pills: Vec<String> = users
                .iter()
                .map(|u| format!("<a href=\"https://matrix.to/#/{}\">{}</a>", escape(u.as_str()), escape(u.as_str())))
                .collect();
            let names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
            msg.plain.push_str(&format!("\n{}", names.join(" ")));
            msg.html.push_str(&format!("<br>{}", pills.join(" ")));
            let mut c = notice_content(&msg.plain, &msg.html);
            c["m.mentions"] = json!({"user_ids": names});
            c
        }
        Mentions::Room => {
            msg.plain.push_str("\n@room");
            msg.html.push_str("<br>@room");
            let mut c = notice_content(&msg.plain, &msg.html);
            c["m.mentions"] = json!({"room": true});
            c
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Msg {
        let mut m = Msg::new();
        m.text("#1 someone knocked");
        m
    }

    #[test]
    fn mentions_go_in_m_mentions_and_in_the_text() {
        assert_eq!(content(msg(), &Mentions::None)["m.mentions"], json!({}));
        let users = vec![OwnedUserId::try_from("@a:x").unwrap(), OwnedUserId::try_from("@b:x").unwrap()];
        let c = content(msg(), &Mentions::Users(users));
        assert_eq!(c["m.mentions"], json!({"user_ids": ["@a:x", "@b:x"]}));
        assert!(c["formatted_body"].as_str().unwrap().contains("<a href=\"https://matrix.to/#/@a:x\">@a:x</a>"));
        assert!(c["body"].as_str().unwrap().ends_with("@a:x @b:x"));
        let c = content(msg(), &Mentions::Room);
        assert_eq!(c["m.mentions"], json!({"room": true}));
        assert!(c["body"].as_str().unwrap().ends_with("@room"));
    }
}
