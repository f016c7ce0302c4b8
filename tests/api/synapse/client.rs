//! Test users: real Matrix clients over plain HTTP (the client-server API), registered with
//! Synapse's shared-secret admin API.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use super::homeserver::SHARED_SECRET;

/// A logged-in user.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub token: String,
    base: String,
    http: reqwest::Client,
}

static TXN: AtomicU64 = AtomicU64::new(0);

/// Percent-encodes a path segment (room IDs and aliases contain `!`, `#`, `:`).
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl User {
    /// Registers `name` on the homeserver at `base` (shared-secret registration).
    pub async fn register(base: &str, name: &str) -> User {
        Self::register_as(base, name, false).await
    }

    /// Registers a server admin.
    pub async fn register_admin(base: &str, name: &str) -> User {
        Self::register_as(base, name, true).await
    }

    async fn register_as(base: &str, name: &str, admin: bool) -> User {
        let http = reqwest::Client::new();
        let url = format!("{base}/_synapse/admin/v1/register");
        let nonce: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let nonce = nonce["nonce"].as_str().expect("a nonce").to_owned();
        let password = format!("pw-{name}-secret");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).unwrap();
        let kind = if admin { "admin" } else { "notadmin" };
        mac.update(format!("{nonce}\0{name}\0{password}\0{kind}").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let body = json!({"nonce": nonce, "username": name, "password": password, "admin": admin, "mac": mac});
        let res = http.post(&url).json(&body).send().await.unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert!(status.is_success(), "registering {name}: {status} {v}");
        User {
            id: v["user_id"].as_str().unwrap().to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
            base: base.to_owned(),
            http,
        }
    }

    /// A client acting with a given token (e.g. the appservice's as_token).
    pub fn with_token(base: &str, id: &str, token: &str) -> User {
        User { id: id.to_owned(), token: token.to_owned(), base: base.to_owned(), http: reqwest::Client::new() }
    }

    /// Calls the client-server API; returns status and body.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/_matrix/client/{path}", self.base);
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        let v = res.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Like [`User::call`], failing the test unless the answer is 2xx.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{} {path}: {status} {v}", self.id);
        v
    }

    pub async fn create_room(&self, body: Value) -> String {
        let v = self.ok(reqwest::Method::POST, "v3/createRoom", Some(body)).await;
        v["room_id"].as_str().unwrap().to_owned()
    }

    pub async fn invite(&self, room: &str, user: &str) {
        self.ok(reqwest::Method::POST, &format!("v3/rooms/{}/invite", enc(room)), Some(json!({"user_id": user}))).await;
    }

    /// Joins by room ID or alias.
    pub async fn join(&self, room: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("v3/join/{}", enc(room)), Some(json!({}))).await
    }

    /// Knocks by room ID (with `via`, for a room on another server) or alias.
    pub async fn knock(&self, room: &str, reason: Option<&str>, via: Option<&str>) -> (u16, Value) {
        let body = match reason {
            Some(r) => json!({"reason": r}),
            None => json!({}),
        };
        let query = via.map(|s| format!("?server_name={}", enc(s))).unwrap_or_default();
        self.call(reqwest::Method::POST, &format!("v3/knock/{}{query}", enc(room)), Some(body)).await
    }

    pub async fn leave(&self, room: &str) {
        self.ok(reqwest::Method::POST, &format!("v3/rooms/{}/leave", enc(room)), Some(json!({}))).await;
    }

    /// `user`'s membership in `room` as the homeserver reports it, and its reason.
    pub async fn membership(&self, room: &str, user: &str) -> (Option<String>, Option<String>) {
        let path = format!("v3/rooms/{}/state/m.room.member/{}", enc(room), enc(user));
        let (status, v) = self.call(reqwest::Method::GET, &path, None).await;
        if status == 404 {
            return (None, None);
        }
        assert_eq!(status, 200, "{path}: {v}");
        (v["membership"].as_str().map(str::to_owned), v["reason"].as_str().map(str::to_owned))
    }

    /// Sends an event; returns its ID.
    pub async fn send(&self, room: &str, kind: &str, content: Value) -> String {
        let txn = format!("t{}-{}", std::process::id(), TXN.fetch_add(1, Ordering::Relaxed));
        let path = format!("v3/rooms/{}/send/{kind}/{txn}", enc(room));
        let v = self.ok(reqwest::Method::PUT, &path, Some(content)).await;
        v["event_id"].as_str().unwrap().to_owned()
    }

    pub async fn say(&self, room: &str, body: &str) -> String {
        self.send(room, "m.room.message", json!({"msgtype": "m.text", "body": body})).await
    }

    pub async fn react(&self, room: &str, event: &str, key: &str) -> String {
        let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}});
        self.send(room, "m.reaction", content).await
    }

    /// The room's latest events (up to 500), oldest first.
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let path = format!("v3/rooms/{}/messages?dir=b&limit=500", enc(room));
        let v = self.ok(reqwest::Method::GET, &path, None).await;
        let mut events = v["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }
}
