//! Test helpers: a fake homeserver and `spawn_app()`.

pub use knockwarden_test_support::fake_homeserver;

use std::{path::PathBuf, sync::Arc, time::Duration};

use knockwarden::{
    config::Settings,
    homeserver::{Homeserver, MatrixHomeserver},
    registration::{AppRegistration, NewRegistration},
    startup::{Application, Stopper},
    storage::Store,
};
use ruma::server_name;
use serde_json::Value;

pub use fake_homeserver::FakeHomeserver;

pub const SERVER_NAME: &str = "test.local";
pub const BOT: &str = "@knockwarden:test.local";
pub const CONTROL_ROOM: &str = "!ctrl:test.local";
pub const MODERATOR: &str = "@mod:test.local";

/// A fixture from `tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The `events` of a captured transaction fixture.
pub fn fixture_txn_body(name: &str) -> Value {
    fixture(name)["body"].clone()
}

/// Options for [`spawn_app_with`].
pub struct AppOptions {
    pub max_body_bytes: usize,
    /// Extra YAML appended to the config.
    pub extra_config: String,
    /// The control room (ID or alias).
    pub control_room: String,
    /// `moderators.users`.
    pub moderators: Vec<String>,
    /// Extra YAML lines under `homeserver:` (each indented by two spaces).
    pub homeserver_extra: String,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            extra_config: String::new(),
            control_room: CONTROL_ROOM.to_owned(),
            moderators: vec![],
            homeserver_extra: String::new(),
        }
    }
}

/// A running knockwarden on a random port, with its own database and fake homeserver.
pub struct TestApp {
    pub address: String,
    /// Where `GET /metrics` is served, when the config sets `metrics.listen`.
    pub metrics_address: Option<String>,
    pub hs_token: String,
    pub store: Store,
    /// What the intake remembers (the backlog waiting for the worker, among others).
    pub intake: Arc<knockwarden::pipeline::intake::Memory>,
    pub homeserver: FakeHomeserver,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    stopper: Stopper,
    handle: tokio::task::JoinHandle<Result<(), knockwarden::startup::StartError>>,
}

/// Writes a config and registration into `dir`; returns the config path.
pub fn write_config(dir: &std::path::Path, homeserver_url: &str, opts: &AppOptions) -> PathBuf {
    let reg_path = dir.join("registration.yaml");
    if !reg_path.exists() {
        NewRegistration {
            id: "knockwarden",
            url: "http://127.0.0.1:0",
            localpart: "knockwarden",
            server_name: server_name!("test.local"),
        }
        .write(&reg_path, false)
        .unwrap();
    }
    let config = format!(
        r#"homeserver:
  url: "{homeserver_url}"
  server_name: "{SERVER_NAME}"
{hs_extra}appservice:
  listen: "127.0.0.1:0"
  registration: "registration.yaml"
  max_body_bytes: {max}
database: "db"
policies: "policies"
control_room: "{control}"
moderators:
  power_level: 50
  users: {users}
notify: all
log_format: pretty
{extra}"#,
        max = opts.max_body_bytes,
        extra = opts.extra_config,
        hs_extra = opts.homeserver_extra,
        control = opts.control_room,
        users = serde_json::to_string(&opts.moderators).unwrap(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    path
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(opts: AppOptions) -> TestApp {
    let homeserver = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    spawn_app_in(dir, homeserver, opts).await
}

/// Starts knockwarden over an existing directory (to restart on the same database).
pub async fn spawn_app_in(dir: tempfile::TempDir, homeserver: FakeHomeserver, opts: AppOptions) -> TestApp {
    init_logs();
    let config_path = write_config(dir.path(), &homeserver.url(), &opts);
    let settings = Settings::load(&config_path).unwrap();
    let app = Application::build(settings.clone()).await.expect("knockwarden starts");
    run(app, &settings, dir, homeserver)
}

/// Like [`spawn_app_in`], with the bot's homeserver client wrapped by `wrap` (to inject
/// faults between knockwarden and the fake).
pub async fn spawn_app_wrapping(
    dir: tempfile::TempDir,
    homeserver: FakeHomeserver,
    opts: AppOptions,
    wrap: impl FnOnce(MatrixHomeserver) -> Arc<dyn Homeserver>,
) -> TestApp {
    init_logs();
    let config_path = write_config(dir.path(), &homeserver.url(), &opts);
    let settings = Settings::load(&config_path).unwrap();
    let reg = &settings.registration;
    let client = MatrixHomeserver::new(&settings.config.homeserver.url, &reg.bot_user_id, &reg.as_token).await.unwrap();
    let app = Application::build_with(settings.clone(), wrap(client)).await.expect("knockwarden starts");
    run(app, &settings, dir, homeserver)
}

fn run(app: Application, settings: &Settings, dir: tempfile::TempDir, homeserver: FakeHomeserver) -> TestApp {
    let hs_token = settings.registration.hs_token.clone();
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
    let store = app.store().clone();
    let intake = app.intake();
    let stopper = app.stopper();
    let handle = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        metrics_address,
        hs_token,
        store,
        intake,
        homeserver,
        dir,
        client: reqwest::Client::new(),
        stopper,
        handle,
    }
}

fn init_logs() {
    knockwarden::telemetry::init(knockwarden::config::LogFormat::Pretty);
}

impl TestApp {
    /// PUTs a transaction with the right token.
    pub async fn put_txn(&self, txn_id: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(format!("{}/_matrix/app/v1/transactions/{txn_id}", self.address))
            .bearer_auth(&self.hs_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops gracefully and gives back the directory and homeserver, for a restart.
    pub async fn stop(self) -> (tempfile::TempDir, FakeHomeserver) {
        self.stopper.stop().await;
        self.handle.await.unwrap().unwrap();
        // The database handle is released with the last clone.
        drop(self.store);
        (self.dir, self.homeserver)
    }

    /// Waits for the service to end by itself; what it ended with.
    pub async fn ended(self) -> Result<(), knockwarden::startup::StartError> {
        self.handle.await.unwrap()
    }

    /// The bot's registration as written on disk.
    pub fn registration(&self) -> AppRegistration {
        AppRegistration::load(&self.dir.path().join("registration.yaml"), server_name!("test.local")).unwrap()
    }
}

/// Polls `check` until it holds, for up to 30 s (generous: the suite runs tests in parallel on 2 cores).
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A knock event of `user` in `room`.
pub fn knock_event(event_id: &str, room: &str, user: &str, reason: Option<&str>) -> Value {
    let mut content = serde_json::json!({"membership": "knock", "displayname": user.trim_start_matches('@').split(':').next().unwrap()});
    if let Some(r) = reason {
        content["reason"] = Value::from(r);
    }
    serde_json::json!({
        "event_id": event_id, "room_id": room, "sender": user, "state_key": user,
        "type": "m.room.member", "content": content, "origin_server_ts": 1_795_403_555_095u64, "unsigned": {}
    })
}

/// A membership event.
pub fn member_event(event_id: &str, room: &str, sender: &str, user: &str, membership: &str) -> Value {
    serde_json::json!({
        "event_id": event_id, "room_id": room, "sender": sender, "state_key": user,
        "type": "m.room.member", "content": {"membership": membership}, "origin_server_ts": 1_795_403_555_095u64, "unsigned": {}
    })
}

/// Runs `knockwarden doctor -c CONFIG [args]` (on a blocking thread: the fake homeserver may
/// run on this test's runtime); returns whether it exited 0, and its stdout.
pub async fn doctor(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    doctor_of(std::path::Path::new(env!("CARGO_BIN_EXE_knockwarden")), config, args).await
}

/// [`doctor`] with another binary (an installed package's).
pub async fn doctor_of(binary: &std::path::Path, config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let (binary, config) = (binary.to_owned(), config.to_owned());
    let args = args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .arg("doctor")
            .arg("-c")
            .arg(config)
            .args(args)
            .env_remove("KNOCKWARDEN_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}
