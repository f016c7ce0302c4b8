//! Every route, and every error the HTTP surface answers with.

use serde_json::{Value, json};

use crate::helpers::{AppOptions, BOT, spawn_app, spawn_app_with};

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json::<Value>().await.unwrap())
}

#[tokio::test]
async fn missing_token_is_401_and_wrong_token_is_403() {
    let app = spawn_app().await;
    let url = format!("{}/_matrix/app/v1/transactions/1", app.address);
    let body = json!({"events": []});

    let (status, err) = error_of(app.client.put(&url).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(err["errcode"], "M_UNAUTHORIZED");
    assert!(err["error"].is_string());

    let (status, err) = error_of(app.client.put(&url).bearer_auth("wrong").json(&body).send().await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (403, Some("M_FORBIDDEN")));

    // Legacy query parameter: accepted alone, and both must match when both are given.
    let ok = app.client.put(format!("{url}?access_token={}", app.hs_token)).json(&body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let (status, err) = error_of(
        app.client
            .put(format!("{url}?access_token=wrong"))
            .bearer_auth(&app.hs_token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, err["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, _) =
        error_of(app.client.put(format!("{url}?access_token=wrong")).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 403);

    // Every homeserver route is protected.
    for (method, path) in [
        ("POST", "/_matrix/app/v1/ping"),
        ("GET", "/_matrix/app/v1/users/@knockwarden:test.local"),
        ("GET", "/_matrix/app/v1/rooms/%23a:test.local"),
        ("GET", "/users/@knockwarden:test.local"),
        ("PUT", "/transactions/1"),
    ] {
        let req = app.client.request(method.parse().unwrap(), format!("{}{path}", app.address));
        let (status, err) = error_of(req.json(&json!({"events": []})).send().await.unwrap()).await;
        assert_eq!((status, err["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{method} {path}");
    }
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_matrix_errors() {
    let app = spawn_app().await;
    let (status, err) = error_of(app.client.get(format!("{}/nope", app.address)).send().await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")));

    let (status, err) = error_of(
        app.client
            .get(format!("{}/_matrix/app/v1/transactions/1", app.address))
            .bearer_auth(&app.hs_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, err["errcode"].as_str()), (405, Some("M_UNRECOGNIZED")));

    let (status, err) = error_of(app.client.post(format!("{}/health", app.address)).send().await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (405, Some("M_UNRECOGNIZED")));
}

#[tokio::test]
async fn bodies_that_are_too_large_not_json_or_without_events_are_refused() {
    let app = spawn_app_with(AppOptions { max_body_bytes: 2048, ..Default::default() }).await;
    let url = format!("{}/_matrix/app/v1/transactions/9", app.address);
    let put = |body: Vec<u8>| {
        app.client.put(&url).bearer_auth(&app.hs_token).header("content-type", "application/json").body(body).send()
    };

    let big = serde_json::to_vec(&json!({"events": [], "pad": "x".repeat(4096)})).unwrap();
    let (status, err) = error_of(put(big).await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (413, Some("M_TOO_LARGE")));

    let (status, err) = error_of(put(b"{not json".to_vec()).await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (400, Some("M_NOT_JSON")));

    let (status, err) = error_of(put(br#"{"evnts": []}"#.to_vec()).await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (400, Some("M_BAD_JSON")));
    assert!(err["error"].as_str().unwrap().contains("events"));

    let (status, err) = error_of(put(br#"{"events": {}}"#.to_vec()).await.unwrap()).await;
    assert_eq!((status, err["errcode"].as_str()), (400, Some("M_BAD_JSON")));

    // A refused body loses nothing and is not remembered: the same txnId with a good body works.
    let ok = put(br#"{"events": []}"#.to_vec()).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn ping_user_and_room_queries() {
    let app = spawn_app().await;
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&app.hs_token);

    let res = auth(app.client.post(format!("{}/_matrix/app/v1/ping", app.address)))
        .json(&json!({"transaction_id": "t1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({}));

    for prefix in ["/_matrix/app/v1", ""] {
        let res = auth(app.client.get(format!("{}{prefix}/users/{BOT}", app.address))).send().await.unwrap();
        assert_eq!(res.status(), 200, "{prefix}");
        assert_eq!(res.json::<Value>().await.unwrap(), json!({}));

        let (status, err) = error_of(
            auth(app.client.get(format!("{}{prefix}/users/@someone:test.local", app.address))).send().await.unwrap(),
        )
        .await;
        assert_eq!((status, err["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{prefix}");

        let (status, err) = error_of(
            auth(app.client.get(format!("{}{prefix}/rooms/%23room:test.local", app.address))).send().await.unwrap(),
        )
        .await;
        assert_eq!((status, err["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{prefix}");
    }
}

#[tokio::test]
async fn health_reports_storage() {
    let app = spawn_app().await;
    let res = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body["inbox"].is_u64());
}

#[tokio::test]
async fn once_storage_has_failed_health_is_503_and_the_service_stops_with_an_error() {
    let app = spawn_app().await;
    app.store.mark_failed(knockwarden::storage::StoreError::Corrupt { tree: "meta", message: "disk gone".into() });
    // Until it has stopped (it checks twice a second), /health says so.
    if let Ok(res) = app.client.get(format!("{}/health", app.address)).send().await {
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "storage unavailable");
    }
    // It stops with an error, for the service manager to start it again (a zombie before).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), app.ended()).await.expect("the service stops");
    assert!(matches!(ended, Err(knockwarden::startup::StartError::StorageFailed)), "{ended:?}");
}
