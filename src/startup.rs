//! Building and running the service: [`Application`].
//!
//! `build` checks everything that can fail before anything starts (storage, homeserver client,
//! listener), so a bad start leaves nothing half-running. `run_until_stopped` serves until
//! stopped, then lets the worker and the runner finish what they have in hand, and flushes storage.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, web};
use tokio::sync::{Notify, watch};

use crate::{
    app::Shared,
    config::Settings,
    homeserver::{Homeserver, Limited, MatrixHomeserver},
    http::{self, HttpState},
    live_policies::{self, LivePolicies, Reload},
    notices, pipeline,
    storage::{Action, Store, StoreError},
    supervise::{Running, Task},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: cannot open the database: {source}")]
    Store {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("appservice.listen: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policies: {0}")]
    Policies(#[from] crate::live_policies::PolicyError),
    #[error("policies: {0}")]
    Watch(String),
    #[error("homeserver.url: {0}")]
    Homeserver(String),
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error("cannot flush the database on shutdown: {0}")]
    Flush(StoreError),
    /// Storage failed while running (a full disk, an I/O error): the process stops so that
    /// the service manager starts it again, on a database opened afresh.
    #[error(
        "storage failed while running (a full disk or an I/O error; the log says which): stopped so that it can be started again (systemd's Restart=on-failure does); nothing acknowledged is lost"
    )]
    StorageFailed,
}

/// A built, not yet running, knockwarden.
pub struct Application {
    port: u16,
    server: Server,
    /// `GET /metrics`, on `metrics.listen`.
    metrics_server: Option<(Server, u16)>,
    shared: Shared,
    stop_tx: watch::Sender<bool>,
    /// The registration's `id`, for the homeserver's ping.
    appservice_id: String,
    /// Watches the policy directory until stopped.
    _watcher: live_policies::Watcher,
}

/// Stops a running [`Application`] gracefully.
#[derive(Clone)]
pub struct Stopper {
    handle: actix_web::dev::ServerHandle,
}

impl Stopper {
    /// Stops accepting requests, finishes those in flight; `run_until_stopped` then returns.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

impl Application {
    /// Builds the service with the real homeserver client.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let hs = MatrixHomeserver::new(
            &settings.config.homeserver.url,
            &settings.registration.bot_user_id,
            &settings.registration.as_token,
        )
        .await
        .map_err(StartError::Homeserver)?;
        Self::build_with(settings, Arc::new(hs)).await
    }

    /// Builds the service with a given homeserver (tests put a fake here). Its requests are
    /// limited to `homeserver.max_concurrent_requests` in flight and `homeserver.request_timeout`
    /// each, and timed for `/metrics`.
    pub async fn build_with(settings: Settings, homeserver: Arc<dyn Homeserver>) -> Result<Self, StartError> {
        let Settings { config, registration, admin_token } = settings;
        let metrics = crate::metrics::Metrics::new();
        let limits = crate::homeserver::Limits {
            max_in_flight: config.homeserver.max_concurrent_requests,
            timeout: config.homeserver.request_timeout,
            local: config.homeserver.server_name.clone(),
        };
        let homeserver: Arc<dyn Homeserver> = Arc::new(Limited::new(homeserver, limits, metrics.clone()));
        let db_path = config.database.display().to_string();
        if let Some(parent) = config.database.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StartError::Store { path: db_path.clone(), source: StoreError::Sled(e.into()) })?;
        }
        let store = Store::open(&config.database).map_err(|source| StartError::Store { path: db_path, source })?;
        let policies = Arc::new(LivePolicies::start(&config.policies, store.clone())?);
        let db = config.database.display().to_string();
        let lists = Arc::new(
            crate::lists::Lists::load(&store, config.ban_lists.max_rules)
                .map_err(|source| StartError::Store { path: db, source })?,
        );
        let listener = TcpListener::bind(config.appservice.listen)
            .map_err(|source| StartError::Listen { addr: config.appservice.listen.to_string(), source })?;
        let port = listener.local_addr().map_err(|source| StartError::Listen { addr: "?".into(), source })?.port();

        let metrics_listener = match config.metrics.listen {
            Some(addr) => {
                Some(TcpListener::bind(addr).map_err(|source| StartError::Listen { addr: addr.to_string(), source })?)
            }
            None => None,
        };
        let admin: Option<Arc<dyn crate::homeserver::AdminApi>> = admin_token.map(|t| {
            let admin =
                crate::homeserver::SynapseAdmin::new(&config.homeserver.url, t.0, config.homeserver.request_timeout);
            Arc::new(admin) as Arc<dyn crate::homeserver::AdminApi>
        });
        let with_account = policies.current().set.account_policies().iter().map(|p| p.to_string()).collect::<Vec<_>>();
        if !with_account.is_empty() {
            match admin.is_some() {
                true => {
                    tracing::info!(policies = %with_account.join(", "), "`account:` conditions ask the homeserver's admin API")
                }
                false => {
                    tracing::warn!(policies = %with_account.join(", "), "these policies have `account:` conditions, which need homeserver.admin_token_file: without it they are unknown")
                }
            }
        }
        let accounts = Arc::new(crate::accounts::Accounts::new(admin, config.homeserver.server_name.clone()));
        let (stop_tx, stopping) = watch::channel(false);
        let max_body_bytes = config.appservice.max_body_bytes;
        let intake = Arc::new(crate::pipeline::intake::Memory::recall(store.journal().take_unhandled()));
        let shared = Shared {
            store,
            homeserver,
            config: Arc::new(config),
            bot: registration.bot_user_id.clone(),
            policies,
            lists,
            inbox_ready: Arc::new(Notify::new()),
            outbox_ready: Arc::new(Notify::new()),
            tasks: Arc::new(crate::supervise::Tasks::default()),
            metrics,
            stopping,
            started_ms: crate::storage::now_ms(),
            inputs: Default::default(),
            told: Default::default(),
            readiness: Default::default(),
            accounts,
            intake,
        };
        let state =
            web::Data::new(HttpState { shared: shared.clone(), hs_token: registration.hs_token, max_body_bytes });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(log_request))
                .configure(http::configure)
                .default_service(web::to(http::unknown_route))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)
        .map_err(|source| StartError::Listen { addr: format!("port {port}"), source })?
        .run();

        let metrics_server = match metrics_listener {
            Some(l) => Some(
                crate::http::metrics::serve(l, shared.clone())
                    .map_err(|source| StartError::Listen { addr: "metrics.listen".into(), source })?,
            ),
            None => None,
        };

        // Watch from now on, then catch any edit made since the policies were first read.
        let watcher = watch_policies(&shared).map_err(StartError::Watch)?;
        report_reload(&shared, shared.policies.reload());

        let appservice_id = registration.id.clone();
        Ok(Self { port, server, metrics_server, shared, stop_tx, appservice_id, _watcher: watcher })
    }

    /// The port the service listens on (useful when configured with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `GET /metrics`, when `metrics.listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, p)| *p)
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// What the intake remembers (the backlog waiting for the worker, among others).
    pub fn intake(&self) -> Arc<crate::pipeline::intake::Memory> {
        self.shared.intake.clone()
    }

    pub fn stopper(&self) -> Stopper {
        Stopper { handle: self.server.handle() }
    }

    /// Serves until stopped; then finishes in-flight work and flushes storage.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        let Application { server, metrics_server, shared, stop_tx, appservice_id, _watcher: watcher, .. } = self;
        let metrics = metrics_server.map(|(s, _)| {
            let handle = s.handle();
            (tokio::spawn(s), handle)
        });
        queue_startup_actions(&shared);
        // Marked running before they are spawned, so /health never sees them not started; a
        // task that ends, or panics, clears its mark.
        let (worker_mark, runner_mark) = (shared.tasks.running(Task::Worker), shared.tasks.running(Task::Runner));
        let worker = tokio::spawn(supervised(worker_mark, pipeline::worker::run(shared.clone())));
        let runner = tokio::spawn(supervised(
            runner_mark,
            crate::runner::run(
                Arc::new(crate::actions::Actions { shared: shared.clone() }),
                shared.store.clone(),
                shared.outbox_ready.clone(),
                shared.stopping.clone(),
                crate::runner::Settings {
                    max_in_flight: shared.config.homeserver.max_concurrent_requests
                        * crate::runner::ATTEMPTS_PER_REQUEST,
                    give_up_after: shared.config.actions.give_up_after,
                    started_ms: shared.started_ms,
                    metrics: shared.metrics.clone(),
                    control_room_joined: shared.readiness.control_room_joined(),
                    per_server: crate::runner::lanes::PerServer {
                        local: shared.config.homeserver.server_name.clone(),
                        max: shared.config.homeserver.max_requests_per_server,
                    },
                },
                shared.tasks.clone(),
            ),
        ));
        let expiry = tokio::spawn(crate::control::expiry::run(shared.clone()));
        let lockdowns = tokio::spawn(crate::lockdown::run(shared.clone()));
        let retention = tokio::spawn(crate::retention::run(shared.clone()));
        let ping = tokio::spawn(crate::ping::run(shared.clone(), appservice_id));
        // Whatever was left in the inbox by a previous run is handled now.
        shared.inbox_ready.notify_one();
        shared.outbox_ready.notify_one();
        let config = &shared.config;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            bot = %shared.bot,
            policy_version = shared.policies.current().version,
            rooms = shared.store.rooms().joined().map(|r| r.len()).unwrap_or(0),
            listen = %config.appservice.listen,
            metrics = %config.metrics.listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            database_format = crate::storage::FORMAT,
            "knockwarden is running"
        );

        let storage_watch = tokio::spawn(watch_storage(shared.store.clone(), server.handle(), shared.stopping.clone()));
        let served = server.await;
        storage_watch.abort();
        let storage_failed = shared.store.has_failed();
        if let Some((task, handle)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        tracing::info!("stopping: finishing in-flight work");
        let _ = stop_tx.send(true);
        let _ = worker.await;
        let _ = runner.await;
        let _ = expiry.await;
        let _ = lockdowns.await;
        let _ = retention.await;
        let _ = ping.await;
        // Stop watching and wait for the watcher's thread, which holds the database open.
        tokio::task::spawn_blocking(move || watcher.stop()).await.ok();
        if let Err(e) = shared.store.journal().write_unwritten_counts() {
            tracing::warn!(error = %e, "cannot write the counts of dropped events");
        }
        if storage_failed {
            tracing::error!("stopped because storage failed; start knockwarden again (the service manager does)");
            return Err(StartError::StorageFailed);
        }
        shared.store.flush().await.map_err(StartError::Flush)?;
        tracing::info!("stopped");
        served.map_err(StartError::Server)
    }
}

/// Stops the service once storage has failed. sled's errors are sticky: after a full disk or
/// an I/O error nothing more is written, even once space is freed, and a process that kept
/// running would be a zombie. Stopped, it ends with an error, and the service manager starts
/// it again (`Restart=on-failure`): sled opened afresh recovers from its log, the journal
/// keeps everything acknowledged, and the homeserver resends what was refused meanwhile.
async fn watch_storage(store: Store, server: actix_web::dev::ServerHandle, mut stopping: watch::Receiver<bool>) {
    loop {
        if store.has_failed() {
            tracing::error!("storage has failed (see the error above); stopping so that knockwarden is started again");
            server.stop(true).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Runs a long-running task holding its [`Running`] mark.
async fn supervised(mark: Running, task: impl std::future::Future<Output = ()>) {
    let _mark = mark;
    task.await
}

/// Reloads policies when their files change; tells the log and the control room.
fn watch_policies(shared: &Shared) -> Result<live_policies::Watcher, String> {
    let s = shared.clone();
    live_policies::watch(shared.policies.clone(), move |outcome| report_reload(&s, outcome))
}

/// Logs a reload outcome and, unless nothing changed, tells the control room; counts it.
fn report_reload(shared: &Shared, outcome: Result<Reload, live_policies::PolicyError>) {
    let (store, outbox_ready) = (&shared.store, &shared.outbox_ready);
    let counted = match &outcome {
        Ok(Reload::Unchanged { .. }) => "unchanged",
        Ok(Reload::Activated { .. }) => "activated",
        Ok(Reload::Refused { .. }) | Err(_) => "refused",
    };
    crate::metrics::Metrics::add(&shared.metrics.reloads, counted, 1);
    shared.metrics.policy_version.set(shared.policies.current().version as i64);
    let text = live_policies::describe(&outcome);
    let notice = match &outcome {
        Ok(Reload::Unchanged { .. }) => return,
        Ok(Reload::Activated { .. }) => {
            tracing::info!("{text}");
            notices::with_block(&text, None)
        }
        Ok(Reload::Refused { .. }) | Err(_) => {
            tracing::error!("{text}");
            let (head, block) = text.split_once('\n').unwrap_or((&text, ""));
            notices::with_block(head, (!block.is_empty()).then_some(block))
        }
    };
    // A new version may name new aliases and ban lists.
    let mut follow_ups = Vec::new();
    if matches!(outcome, Ok(Reload::Activated { .. })) {
        follow_ups.push(Action::ResolveAliases);
        follow_ups.extend(crate::lists::read_actions(&shared.policies.current().set));
    }
    follow_ups.push(notice);
    match store.outbox().enqueue(follow_ups) {
        Ok(()) => outbox_ready.notify_one(),
        Err(e) => tracing::error!(error = %e, "cannot queue a control-room notice"),
    }
}

/// On every start: join the control room, resolve the policies' aliases, read the ban lists
/// they name again, and learn from the homeserver which rooms the bot is in, catching up on
/// knocks in each ([`Action::Reconcile`]).
/// (Old records are pruned by [`crate::retention`], at start and then periodically.)
fn queue_startup_actions(shared: &Shared) {
    let store = &shared.store;
    let pending: Vec<Action> = store.outbox().all().unwrap_or_default().into_iter().map(|(_, e)| e.action).collect();
    let mut actions = vec![Action::JoinControlRoom, Action::ResolveAliases, Action::Reconcile];
    actions.extend(crate::lists::read_actions(&shared.policies.current().set));
    actions.retain(|a| !pending.contains(a));
    if let Err(e) = store.outbox().enqueue(actions) {
        tracing::error!(error = %e, "cannot queue the start-up actions");
    }
}

/// Logs each request's method, path (never the query: it may hold a token) and status.
async fn log_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let path = req.path().to_owned();
    let started = std::time::Instant::now();
    let res = next.call(req).await?;
    tracing::debug!(%method, %path, status = res.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    Ok(res)
}
