//! `GET /metrics` on its own listener (`metrics.listen`), never on the appservice port: the
//! registry ([`crate::metrics`]) rendered with the values read at scrape time.

use std::time::Duration;

/// Serves `GET /metrics` on `listener` (anything else: 404). Not authenticated: bind it where
/// only the scraper reaches (loopback by default in the example config).
pub fn serve(
    listener: std::net::TcpListener,
    shared: crate::app::Shared,
) -> std::io::Result<(actix_web::dev::Server, u16)> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let port = listener.local_addr()?.port();
    let data = web::Data::new(shared);
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/metrics",
            web::get().to(|shared: web::Data<crate::app::Shared>| async move {
                let store = &shared.store;
                let snapshot = crate::metrics::Snapshot {
                    inbox: store.queue_depth(crate::storage::Queue::Inbox),
                    outbox: store.queue_depth(crate::storage::Queue::Outbox),
                    oldest_action_age: shared
                        .tasks
                        .oldest_action()
                        .map(|t| Duration::from_millis(crate::storage::now_ms().saturating_sub(t))),
                    failed: store.queue_depth(crate::storage::Queue::Failed),
                    reviews_pending: store.queue_depth(crate::storage::Queue::OpenReviews),
                    waiting_knocks: shared.tasks.waiting_knocks(),
                    unresolved_aliases: crate::pipeline::knocks::unresolved_aliases(&shared).len() as u64,
                };
                HttpResponse::Ok()
                    .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(shared.metrics.render(snapshot))
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok((server, port))
}
