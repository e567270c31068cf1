//! An app's backend acts for its end users with one service key, naming
//! each in `X-Gengate-User`: every per-user rule applies to the end user.

use std::time::Duration;

use gengate_config::DurRange;
use gengate_core::Role;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::helpers::*;

/// A request as `key`, acting for `end_user` when one is given.
async fn call(
    app: &TestApp,
    method: Method,
    key: &str,
    end_user: Option<HeaderValue>,
    path: &str,
    body: Option<&Value>,
) -> Resp {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(who) = end_user {
        req = req.header("X-Gengate-User", who);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    read(req.send().await.expect("request sent")).await
}

fn as_user(id: &str) -> Option<HeaderValue> {
    Some(HeaderValue::from_str(id).expect("a header value"))
}

fn ids(list: &Resp) -> Vec<String> {
    let mut ids: Vec<String> = list.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", list.body))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Tasks that stay queued or running for the test's length, so that a
/// cancel always finds them unfinished.
async fn slow_app() -> TestApp {
    spawn_app_with(|cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.concurrency = 1;
        sim.latency = DurRange(Duration::from_secs(30), Duration::from_secs(30));
    })
    .await
}

#[tokio::test]
async fn a_service_key_sees_and_cancels_only_the_named_end_users_tasks() {
    let app = slow_app().await;
    let shop = make_key(&*app.store, "shop", Role::Service).await;
    let post = |who: &'static str, p: &'static str| {
        let (app, shop) = (&app, &shop);
        async move {
            let r = call(
                app,
                Method::POST,
                shop,
                as_user(who),
                "/v1/tasks",
                Some(&prompt(p)),
            )
            .await;
            assert_eq!(r.status, 202, "{}", r.body);
            r.id()
        }
    };
    let alice = [post("alice", "a1").await, post("alice", "a2").await];
    let bob = post("bob", "b1").await;
    let own = post_as_itself(&app, &shop).await;

    let list = |who: Option<HeaderValue>| call(&app, Method::GET, &shop, who, "/v1/tasks", None);
    let mut want = alice.to_vec();
    want.sort();
    assert_eq!(ids(&list(as_user("alice")).await), want);
    assert_eq!(ids(&list(as_user("bob")).await), vec![bob.clone()]);
    assert_eq!(ids(&list(as_user("carol")).await), Vec::<String>::new());
    assert_eq!(
        ids(&list(None).await),
        vec![own.clone()],
        "without the header the key acts for the app itself"
    );
    // A user key of a user named alice is someone else.
    let other_alice = app.key_for("alice").await;
    assert_eq!(
        ids(&app.get_as(&other_alice, "/v1/tasks").await),
        Vec::<String>::new()
    );

    for (path, method) in [
        (format!("/v1/tasks/{bob}"), Method::GET),
        (format!("/v1/tasks/{bob}/cancel"), Method::POST),
        (format!("/v1/tasks/{own}"), Method::GET),
    ] {
        let r = call(&app, method, &shop, as_user("alice"), &path, None).await;
        assert_eq!(r.status, 404, "alice reached {path}: {}", r.body);
    }
    let r = call(
        &app,
        Method::GET,
        &shop,
        as_user("bob"),
        &format!("/v1/tasks/{bob}"),
        None,
    )
    .await;
    assert_ne!(r.status_text(), "canceled", "bob's task is untouched");

    let c = call(
        &app,
        Method::POST,
        &shop,
        as_user("alice"),
        &format!("/v1/tasks/{}/cancel", alice[0]),
        None,
    )
    .await;
    assert_eq!((c.status, c.status_text()), (200, "canceled"), "{}", c.body);
}

async fn post_as_itself(app: &TestApp, key: &str) -> String {
    let r = call(
        app,
        Method::POST,
        key,
        None,
        "/v1/tasks",
        Some(&prompt("own")),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    r.id()
}

#[tokio::test]
async fn only_a_service_key_may_name_an_end_user_and_only_a_well_formed_one() {
    let app = spawn_app().await;
    let shop = make_key(&*app.store, "shop", Role::Service).await;
    for key in [&app.user_key, &app.admin_key] {
        let r = call(&app, Method::GET, key, as_user("alice"), "/v1/tasks", None).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(
            r.error(),
            ("end_user_not_allowed".into(), Some("X-Gengate-User".into()))
        );
    }
    let long = "x".repeat(129);
    for bad in [
        HeaderValue::from_static(""),
        HeaderValue::from_str(&long).unwrap(),
        HeaderValue::from_static("al ice"),
        HeaderValue::from_bytes("zoë".as_bytes()).unwrap(),
        HeaderValue::from_bytes(b"a\tb").unwrap(),
    ] {
        let r = call(
            &app,
            Method::GET,
            &shop,
            Some(bad.clone()),
            "/v1/tasks",
            None,
        )
        .await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
        assert_eq!(r.error().0, "invalid_end_user", "{bad:?}");
    }
    let longest = "x".repeat(128);
    let r = call(
        &app,
        Method::GET,
        &shop,
        as_user(&longest),
        "/v1/tasks",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &app,
        Method::GET,
        &shop,
        as_user("a/b@c:d"),
        "/v1/tasks",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "any printable character: {}", r.body);
    // A bad key is refused as such, header or not.
    let r = call(
        &app,
        Method::GET,
        "gg_nope",
        as_user("alice"),
        "/v1/tasks",
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn the_admin_api_makes_service_keys() {
    let app = spawn_app().await;
    let body = json!({"user": "shop", "role": "service"});
    let r = call(
        &app,
        Method::POST,
        &app.admin_key,
        None,
        "/v1/admin/keys",
        Some(&body),
    )
    .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (201, Some("service")),
        "{}",
        r.body
    );
    let key = r.body["key"].as_str().unwrap().to_owned();
    let t = call(
        &app,
        Method::POST,
        &key,
        as_user("dana"),
        "/v1/tasks",
        Some(&prompt("d")),
    )
    .await;
    assert_eq!(t.status, 202, "{}", t.body);
    let bad = json!({"user": "shop", "role": "owner"});
    let r = call(
        &app,
        Method::POST,
        &app.admin_key,
        None,
        "/v1/admin/keys",
        Some(&bad),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service")
    );
    // A service key is no admin.
    let r = call(
        &app,
        Method::POST,
        &key,
        None,
        "/v1/admin/keys",
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
}
