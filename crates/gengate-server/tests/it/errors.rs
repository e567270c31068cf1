//! Every refusal has the right status and the one error shape.

use serde_json::json;

use crate::helpers::*;

async fn raw_post(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> Resp {
    let mut req = app
        .client
        .post(app.url("/v1/tasks"))
        .bearer_auth(&app.user_key)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn bad_auth_is_401_and_admin_routes_refuse_users_with_403() {
    let app = spawn_app().await;
    let none = read(app.client.get(app.url("/v1/tasks")).send().await.unwrap()).await;
    assert_eq!(
        (none.status, none.error().0.as_str()),
        (401, "unauthorized")
    );
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    for bad in ["gg_nope", "not-a-key", ""] {
        let r = app.get_as(bad, "/v1/tasks").await;
        assert_eq!(r.status, 401, "key {bad:?}");
        r.error();
    }
    let basic = read(
        app.client
            .get(app.url("/v1/tasks"))
            .basic_auth("a", Some("b"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(basic.status, 401);
    let user = app.get_as(&app.user_key, "/v1/admin/stats").await;
    assert_eq!((user.status, user.error().0.as_str()), (403, "forbidden"));
    let admin = app.get_as(&app.admin_key, "/v1/admin/stats").await;
    assert_eq!(admin.status, 200, "{}", admin.body);
}

#[tokio::test]
async fn revoked_keys_stop_working_within_a_second() {
    let app = spawn_app().await;
    let key = app.key_for("mallory").await;
    assert_eq!(app.get_as(&key, "/v1/tasks").await.status, 200);
    let prefix = &key[..11];
    assert!(
        app.store
            .revoke_key(prefix, gengate_server::now_ms())
            .await
            .unwrap()
    );
    // The promise: refused within the key cache's lifetime.
    let within = gengate_server::service::auth::CACHE_TTL;
    gengate_testkit::wait_for("the revoked key to be refused", within, || async {
        app.get_as(&key, "/v1/tasks").await.status == 401
    })
    .await;
}

#[tokio::test]
async fn another_users_task_is_404_never_403() {
    let app = spawn_app().await;
    let id = app.post_task(&prompt("mine")).await.id();
    let bob = app.key_for("bob").await;
    for r in [
        app.get_as(&bob, &format!("/v1/tasks/{id}")).await,
        app.cancel_as(&bob, &id).await,
        app.get_as(&bob, "/v1/tasks/tsk_00000000000000000000000000")
            .await,
        app.get_as(&bob, "/v1/tasks/garbage").await,
    ] {
        assert_eq!(
            (r.status, r.error().0.as_str()),
            (404, "not_found"),
            "{}",
            r.body
        );
    }
    let listed = app.get_as(&bob, "/v1/tasks").await;
    assert_eq!(listed.body["data"], json!([]));
    // An admin may see it.
    assert_eq!(
        app.get_as(&app.admin_key, &format!("/v1/tasks/{id}"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn malformed_wrong_typed_oversized_and_non_json_bodies_are_refused() {
    let app = spawn_app().await;
    let r = raw_post(&app, Some("application/json"), b"{\"model\": ".to_vec()).await;
    assert_eq!((r.status, r.error().0.as_str()), (400, "malformed_json"));
    let r = raw_post(
        &app,
        Some("application/json"),
        br#"{"model":"sim-image","input":{"prompt":"x"}} trailing"#.to_vec(),
    )
    .await;
    assert_eq!((r.status, r.error().0.as_str()), (400, "malformed_json"));
    let r = raw_post(&app, Some("text/plain"), b"{}".to_vec()).await;
    assert_eq!(
        (r.status, r.error().0.as_str()),
        (415, "unsupported_media_type")
    );
    let r = raw_post(&app, None, b"{}".to_vec()).await;
    assert_eq!(r.status, 415);
    let huge = format!(
        "{{\"model\":\"sim-image\",\"input\":{{\"prompt\":\"{}\"}}}}",
        "x".repeat(70 * 1024)
    );
    let r = raw_post(&app, Some("application/json"), huge.into_bytes()).await;
    assert_eq!((r.status, r.error().0.as_str()), (413, "payload_too_large"));

    let cases = [
        (
            json!({"model": "sim-image", "input": {"prompt": "x"}, "public": "yes"}),
            "public",
            "invalid_request",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x"}, "colour": 1}),
            ".",
            "invalid_request",
        ),
        (json!({"input": {"prompt": "x"}}), ".", "invalid_request"),
        (
            json!({"model": "dall-e-9", "input": {"prompt": "x"}}),
            "model",
            "unknown_model",
        ),
        (
            json!({"model": "sim-image", "input": {}}),
            "input.prompt",
            "invalid_input",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x".repeat(2001)}}),
            "input.prompt",
            "invalid_input",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x", "size": "3x3"}}),
            "input.size",
            "invalid_input",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x", "steps": "many"}}),
            "input.steps",
            "invalid_input",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x", "nope": 1}}),
            "input.nope",
            "invalid_input",
        ),
        (
            json!({"model": "sim-video", "input": {"prompt": "x", "image_url": "javascript:alert(1)"}}),
            "input.image_url",
            "invalid_input",
        ),
        (
            json!({"model": "sim-image", "input": "a fox"}),
            "input",
            "invalid_input",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x"}, "priority": 11}),
            "priority",
            "invalid_request",
        ),
        (
            json!({"model": "sim-image", "input": {"prompt": "x"}, "priority": 5}),
            "priority",
            "invalid_request",
        ),
    ];
    for (body, field, code) in cases {
        let r = app.post_task(&body).await;
        assert_eq!(r.status, 422, "{body} -> {}", r.body);
        let (got_code, got_field) = r.error();
        assert_eq!(got_code, code, "{body} -> {}", r.body);
        if field != "." {
            assert_eq!(got_field.as_deref(), Some(field), "{body} -> {}", r.body);
        }
    }
    // Admins may raise priority.
    let r = app
        .post_task_as(
            &app.admin_key,
            &json!({"model": "sim-image", "input": {"prompt": "x"}, "priority": 5}),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // Nothing refused was stored.
    let mine = app.get_as(&app.user_key, "/v1/tasks").await;
    assert_eq!(mine.body["data"], json!([]));
}

#[tokio::test]
async fn bad_queries_unknown_routes_and_methods_use_the_error_shape() {
    let app = spawn_app().await;
    for (path, status, code) in [
        ("/v1/tasks?limit=abc", 400, "invalid_query"),
        ("/v1/tasks?sort=asc", 400, "invalid_query"),
        ("/v1/tasks?limit=0", 422, "invalid_request"),
        ("/v1/tasks?limit=1000", 422, "invalid_request"),
        ("/v1/tasks?status=done", 422, "invalid_request"),
        ("/v1/tasks?cursor=xyz", 422, "invalid_request"),
        ("/v1/tasks?model=nope", 422, "unknown_model"),
        ("/v1/gallery?limit=-1", 400, "invalid_query"),
        ("/v2/everything", 404, "not_found"),
    ] {
        let r = app.get_as(&app.user_key, path).await;
        assert_eq!(
            (r.status, r.error().0.as_str()),
            (status, code),
            "{path}: {}",
            r.body
        );
    }
    let r = read(
        app.client
            .delete(app.url("/v1/models"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.error().0.as_str()),
        (405, "method_not_allowed")
    );
}
