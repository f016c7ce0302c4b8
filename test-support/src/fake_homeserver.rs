//! An in-process fake homeserver: a real HTTP server on a random port that answers the
//! client-server calls knockwarden makes, records every request, and can be told to fail.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived (read by the pipeline benchmark, which shares this file).
    #[allow(dead_code)]
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub authorization: Option<String>,
}

/// A scripted answer: `(status, body, Retry-After header)`.
pub type Scripted = (u16, Value, Option<String>);

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Answers to give, in order, to requests whose path contains the key.
    scripted: Vec<(String, VecDeque<Scripted>)>,
    /// room ID -> knock events for `/members?membership=knock`.
    knocks: HashMap<String, Vec<Value>>,
    /// (room, type, state_key) -> whole state event.
    state: HashMap<(String, String, String), Value>,
    /// alias -> room ID.
    aliases: HashMap<String, String>,
    /// room ID -> joined user IDs.
    members: HashMap<String, Vec<String>>,
    /// The rooms the bot is in, for `GET /joined_rooms` (`None`: answered 404 M_UNRECOGNIZED,
    /// so knockwarden keeps the store's view; most tests push the bot's joins instead).
    bot_rooms: Option<Vec<String>>,
    /// Answer every other membership change (invite, kick, ban) with 500.
    flaky: bool,
    /// Membership changes of these users are answered with this status, always.
    failing_users: HashMap<String, u16>,
    flaky_count: u64,
    /// Requests whose path contains the key are answered only after this long.
    delays: Vec<(String, std::time::Duration)>,
    /// Invites, kicks and bans of users of these servers are answered only after this long
    /// (Synapse waiting on a remote server that never answers).
    server_delays: Vec<(String, std::time::Duration)>,
    /// The appservice registered with the fake, as a homeserver knows it from its copy of
    /// the registration: (url, as_token, hs_token). When set, `whoami` checks the as_token and
    /// the appservice ping calls knockwarden's `/ping` with the hs_token.
    appservice: Option<(String, String, String)>,
    /// The admin API: the admin's token, and what it says of each account.
    admin: Option<(String, HashMap<String, Value>)>,
    /// Joins of these rooms or aliases are refused with 403 (the bot is not invited).
    refused_joins: std::collections::HashSet<String>,
    /// Down: new connections are refused (the server is stopped), and any kept-alive
    /// connection gets 503.
    down: bool,
}

#[derive(Clone)]
pub struct FakeHomeserver {
    state: Arc<Mutex<State>>,
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl FakeHomeserver {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts on a given port (0: any), e.g. to come back on the same port after a stop.
    pub async fn start_on(port: u16) -> Self {
        Self::start_with(port, Arc::new(Mutex::new(State::default()))).await
    }

    async fn start_with(port: u16, state: Arc<Mutex<State>>) -> Self {
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(answer)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .bind(("127.0.0.1", port))
            .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { state, port, handle }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops answering (connections are then refused).
    pub async fn go_down(&self) {
        self.state.lock().unwrap().down = true;
        self.handle.stop(false).await;
    }

    /// Comes back on the same port, with the same state.
    pub async fn come_back(&self) -> Self {
        self.state.lock().unwrap().down = false;
        Self::start_with(self.port, self.state.clone()).await
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests of `method` whose path contains `fragment`.
    pub fn requests_to(&self, method: &str, fragment: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == method && r.path.contains(fragment)).collect()
    }

    /// The next requests whose path contains `fragment` get these answers, in order.
    pub fn script(&self, fragment: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.state.lock().unwrap().scripted.push((fragment.to_owned(), answers.into_iter().collect()));
    }

    /// Forgets every scripted answer not given yet.
    pub fn clear_scripts(&self) {
        self.state.lock().unwrap().scripted.clear();
    }

    /// Requests whose path contains `fragment` are answered `by` later, as a slow homeserver
    /// would: with what the fake held when they arrived.
    pub fn delay(&self, fragment: &str, by: std::time::Duration) {
        self.state.lock().unwrap().delays.push((fragment.to_owned(), by));
    }

    /// Invites, kicks and bans of the users of `server` are answered `by` later.
    pub fn delay_users_of(&self, server: &str, by: std::time::Duration) {
        self.state.lock().unwrap().server_delays.push((format!(":{server}"), by));
    }

    pub fn set_knocks(&self, room: &str, events: Vec<Value>) {
        self.state.lock().unwrap().knocks.insert(room.to_owned(), events);
    }

    pub fn set_state(&self, room: &str, kind: &str, state_key: &str, sender: &str, content: Value) {
        let ev = json!({"type": kind, "state_key": state_key, "sender": sender, "room_id": room, "content": content, "event_id": format!("$state-{kind}")});
        self.state.lock().unwrap().state.insert((room.to_owned(), kind.to_owned(), state_key.to_owned()), ev);
    }

    /// Puts a whole state event (it needs `room_id`, `type`, `state_key`); `None` content
    /// removes it.
    pub fn put_state_event(&self, event: Value) {
        let key = (
            event["room_id"].as_str().unwrap().to_owned(),
            event["type"].as_str().unwrap().to_owned(),
            event["state_key"].as_str().unwrap().to_owned(),
        );
        self.state.lock().unwrap().state.insert(key, event);
    }

    /// Sets a user's membership in a room (as the pre-check reads it back).
    pub fn set_membership(&self, room: &str, user: &str, membership: &str) {
        self.set_state(room, "m.room.member", user, user, json!({"membership": membership}));
    }

    /// Says `user` is knocking on `room` with the knock event `event_id` (the check before
    /// acting compares it with the knock an action answers).
    pub fn set_knocking(&self, room: &str, user: &str, event_id: &str) {
        let ev = json!({"type": "m.room.member", "state_key": user, "sender": user, "room_id": room, "content": {"membership": "knock"}, "event_id": event_id});
        self.state.lock().unwrap().state.insert((room.to_owned(), "m.room.member".to_owned(), user.to_owned()), ev);
    }

    /// The membership the fake holds for a user.
    pub fn membership(&self, room: &str, user: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.state
            .get(&(room.to_owned(), "m.room.member".to_owned(), user.to_owned()))
            .and_then(|e| e["content"]["membership"].as_str().map(str::to_owned))
    }

    /// Answers every invite, kick or ban of `user` with `status` (e.g. 502: their server is
    /// down), until set to 0.
    pub fn fail_user(&self, user: &str, status: u16) {
        let mut st = self.state.lock().unwrap();
        match status {
            0 => st.failing_users.remove(user),
            s => st.failing_users.insert(user.to_owned(), s),
        };
    }

    /// Makes every other invite, kick or ban fail with 500.
    pub fn set_flaky(&self, flaky: bool) {
        self.state.lock().unwrap().flaky = flaky;
    }

    pub fn set_members(&self, room: &str, users: &[&str]) {
        self.state.lock().unwrap().members.insert(room.to_owned(), users.iter().map(|u| u.to_string()).collect());
    }

    /// The rooms `GET /joined_rooms` lists from now on.
    pub fn set_joined_rooms(&self, rooms: &[&str]) {
        self.state.lock().unwrap().bot_rooms = Some(rooms.iter().map(|r| r.to_string()).collect());
    }

    /// Joins of `target` (a room ID or alias) are refused with 403 `M_FORBIDDEN` while
    /// `refused`, as Synapse refuses to join an invite-only room the bot is not invited to.
    pub fn refuse_joins(&self, target: &str, refused: bool) {
        let mut st = self.state.lock().unwrap();
        match refused {
            true => st.refused_joins.insert(target.to_owned()),
            false => st.refused_joins.remove(target),
        };
    }

    /// Answers the admin API (`GET /_synapse/admin/v2/users/{userId}`) for `token`, with what
    /// `set_account` said of each user (404 for the others).
    pub fn enable_admin_api(&self, token: &str) {
        self.state.lock().unwrap().admin = Some((token.to_owned(), HashMap::new()));
    }

    /// What the admin API says of `user`'s account (`creation_ts` in seconds, as Synapse).
    pub fn set_account(&self, user: &str, account: Value) {
        let mut st = self.state.lock().unwrap();
        let (_, accounts) = st.admin.as_mut().expect("enable_admin_api first");
        accounts.insert(user.to_owned(), account);
    }

    /// Registers an appservice, as a homeserver reads its copy of the registration.
    pub fn register_appservice(&self, url: &str, as_token: &str, hs_token: &str) {
        self.state.lock().unwrap().appservice = Some((url.to_owned(), as_token.to_owned(), hs_token.to_owned()));
    }

    pub fn set_alias(&self, alias: &str, room: &str) {
        self.state.lock().unwrap().aliases.insert(alias.to_owned(), room.to_owned());
    }
}

fn matrix_error(status: u16, errcode: &str, error: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"errcode": errcode, "error": error}))
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn answer(req: HttpRequest, body: web::Bytes, state: web::Data<Mutex<State>>) -> HttpResponse {
    let path = req.path().to_owned();
    let recorded = Recorded {
        at: std::time::Instant::now(),
        method: req.method().to_string(),
        path: path.clone(),
        query: req.query_string().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        authorization: req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let user = recorded.body["user_id"].as_str().map(str::to_owned);
    let appservice = state.lock().unwrap().appservice.clone();
    if let Some((url, _, hs_token)) = appservice.filter(|_| path.starts_with("/_matrix/client/v1/appservice/")) {
        state.lock().unwrap().requests.push(recorded);
        return ping_appservice(&url, &hs_token).await;
    }
    let response = respond(&req, &body, &state, recorded);
    let delay = {
        let st = state.lock().unwrap();
        let by_path = st.delays.iter().find(|(f, _)| path.contains(f.as_str())).map(|(_, d)| *d);
        let membership = ["/invite", "/kick", "/ban"].iter().any(|v| path.ends_with(v));
        let by_user = user
            .filter(|_| membership)
            .and_then(|u| st.server_delays.iter().find(|(suffix, _)| u.ends_with(suffix.as_str())).map(|(_, d)| *d));
        by_path.or(by_user)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    response
}

/// Like Synapse's appservice ping: calls the appservice's `/ping` with the hs_token.
async fn ping_appservice(url: &str, hs_token: &str) -> HttpResponse {
    let started = std::time::Instant::now();
    let res = reqwest::Client::new()
        .post(format!("{url}/_matrix/app/v1/ping"))
        .bearer_auth(hs_token)
        .json(&json!({}))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => {
            HttpResponse::Ok().json(json!({"duration_ms": started.elapsed().as_millis() as u64}))
        }
        Ok(r) => matrix_error(502, "M_BAD_STATUS", &format!("the appservice answered {}", r.status())),
        Err(e) => matrix_error(502, "M_CONNECTION_FAILED", &e.to_string()),
    }
}

/// The answer, as of the moment the request arrived.
fn respond(req: &HttpRequest, body: &web::Bytes, state: &web::Data<Mutex<State>>, recorded: Recorded) -> HttpResponse {
    let path = req.path().to_owned();
    let mut st = state.lock().unwrap();
    if st.down {
        return matrix_error(503, "M_UNKNOWN", "down");
    }
    st.requests.push(recorded);

    if let Some((_, answers)) = st.scripted.iter_mut().find(|(frag, a)| path.contains(frag.as_str()) && !a.is_empty()) {
        let (status, body, retry_after) = answers.pop_front().unwrap();
        let mut res = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
        if let Some(ra) = retry_after {
            res.insert_header(("Retry-After", ra));
        }
        return res.json(body);
    }

    if let Some(user) = path.strip_prefix("/_synapse/admin/v2/users/") {
        let user = decode(user);
        let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        return match &st.admin {
            None => matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request"),
            Some((token, _)) if presented != format!("Bearer {token}") => {
                matrix_error(401, "M_UNKNOWN_TOKEN", "Unrecognised access token")
            }
            Some((_, accounts)) => match accounts.get(&user) {
                Some(a) => HttpResponse::Ok().json(a),
                None => matrix_error(404, "M_NOT_FOUND", "User not found"),
            },
        };
    }
    if path == "/_matrix/client/versions" {
        return HttpResponse::Ok().json(json!({"versions": ["v1.11", "v1.12"]}));
    }
    let rest = path.strip_prefix("/_matrix/client/v3/").unwrap_or("");
    let parts: Vec<String> = rest.split('/').map(decode).collect();
    let method = req.method().as_str();
    match (method, parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice()) {
        ("POST", ["join", target]) => {
            if st.refused_joins.contains(*target) {
                return matrix_error(403, "M_FORBIDDEN", "You are not invited to this room.");
            }
            let room = st.aliases.get(*target).cloned().unwrap_or_else(|| target.to_string());
            if room.starts_with('#') {
                return matrix_error(404, "M_NOT_FOUND", "Room alias not found");
            }
            HttpResponse::Ok().json(json!({"room_id": room}))
        }
        ("POST", ["rooms", _room, "leave"]) => HttpResponse::Ok().json(json!({})),
        ("GET", ["account", "whoami"]) => {
            let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
            match &st.appservice {
                Some((_, as_token, _)) if presented != format!("Bearer {as_token}") => {
                    matrix_error(401, "M_UNKNOWN_TOKEN", "Unrecognised access token")
                }
                _ => HttpResponse::Ok().json(json!({"user_id": "@knockwarden:test.local"})),
            }
        }
        ("POST", ["rooms", room, verb @ ("invite" | "kick" | "ban")]) => {
            if st.flaky {
                st.flaky_count += 1;
                if st.flaky_count % 2 == 1 {
                    return matrix_error(500, "M_UNKNOWN", "flaky");
                }
            }
            // Like Synapse: the membership changes, and inviting a member is refused.
            let Some(user) =
                serde_json::from_slice::<Value>(body).ok().and_then(|b| b["user_id"].as_str().map(str::to_owned))
            else {
                return matrix_error(400, "M_BAD_JSON", "user_id missing");
            };
            if let Some(&status) = st.failing_users.get(&user) {
                return matrix_error(status, "M_UNKNOWN", "Failed to make the remote server answer");
            }
            let key = (room.to_string(), "m.room.member".to_owned(), user.clone());
            let current = st.state.get(&key).and_then(|e| e["content"]["membership"].as_str().map(str::to_owned));
            if *verb == "invite" && current.as_deref() == Some("join") {
                return matrix_error(403, "M_FORBIDDEN", &format!("{user} is already in the room."));
            }
            let membership = match *verb {
                "invite" => "invite",
                "kick" => "leave",
                _ => "ban",
            };
            let ev = json!({"type": "m.room.member", "state_key": user, "sender": "@knockwarden:test.local", "room_id": room, "content": {"membership": membership}});
            st.state.insert(key, ev);
            HttpResponse::Ok().json(json!({}))
        }
        ("GET", ["directory", "room", alias]) => match st.aliases.get(*alias) {
            Some(room) => HttpResponse::Ok().json(json!({"room_id": room, "servers": ["test.local"]})),
            None => matrix_error(404, "M_NOT_FOUND", "Room alias not found"),
        },
        ("PUT", ["rooms", _room, "send", _kind, txn]) => {
            // Like Synapse: an event over 65,536 bytes (its content, plus about a kilobyte of
            // envelope: IDs, hashes, signatures) is refused.
            if body.len() + 1024 > 65_536 {
                return matrix_error(413, "M_TOO_LARGE", "event too large");
            }
            HttpResponse::Ok().json(json!({"event_id": format!("$sent-{txn}")}))
        }
        ("GET", ["joined_rooms"]) => match &st.bot_rooms {
            Some(rooms) => HttpResponse::Ok().json(json!({"joined_rooms": rooms})),
            None => matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request"),
        },
        ("GET", ["rooms", room, "joined_members"]) => {
            // The members set by hand, and those whose membership state is `join`.
            let by_state = st.state.iter().filter(|((r, kind, _), ev)| {
                r == room && kind == "m.room.member" && ev["content"]["membership"] == "join"
            });
            let joined: serde_json::Map<String, Value> = st
                .members
                .get(*room)
                .into_iter()
                .flatten()
                .cloned()
                .chain(by_state.map(|((_, _, user), _)| user.clone()))
                .map(|u| (u, json!({})))
                .collect();
            HttpResponse::Ok().json(json!({"joined": joined}))
        }
        ("GET", ["rooms", room, "members"]) => {
            let chunk = st.knocks.get(*room).cloned().unwrap_or_default();
            HttpResponse::Ok().json(json!({"chunk": chunk}))
        }
        ("GET", ["rooms", room, "state"]) => {
            let events: Vec<&Value> = st.state.iter().filter(|((r, _, _), _)| r == room).map(|(_, ev)| ev).collect();
            HttpResponse::Ok().json(events)
        }
        ("GET", ["rooms", room, "state", kind, key @ ..]) => {
            let key = key.join("/");
            match st.state.get(&(room.to_string(), kind.to_string(), key)) {
                Some(ev) => HttpResponse::Ok().json(ev),
                None => matrix_error(404, "M_NOT_FOUND", "Event not found."),
            }
        }
        _ => matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request"),
    }
}
