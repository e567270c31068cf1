//! Accounts over HTTP: credits held at create (402 when short, under
//! concurrent creates too), per-user limits (429 with Retry-After and the
//! RateLimit headers), browser tokens scoped to a user and a task, CORS, and
//! the admin API with its audit trail.

use std::time::Duration;

use gengate_config::DurRange;
use gengate_core::{Price, Role};
use reqwest::Method;
use serde_json::{Value, json};

use gengate_testkit::wait_until;

use crate::helpers::*;

/// Tasks that stay queued or running for the test's length; `sim-image`
/// costs `price` credits.
async fn priced_app(price: i64, tweak: impl FnOnce(&mut gengate_config::Config)) -> TestApp {
    spawn_app_with(|cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.concurrency = 1;
        sim.latency = DurRange(Duration::from_secs(30), Duration::from_secs(30));
        cfg.models.get_mut("sim-image").unwrap().price = Some(Price::Flat(price));
        tweak(cfg);
    })
    .await
}

async fn send(app: &TestApp, method: Method, key: &str, path: &str, body: Option<Value>) -> Resp {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.expect("request sent")).await
}

async fn grant(app: &TestApp, user: &str, amount: i64) -> Resp {
    let path = format!("/v1/admin/users/{user}/credits");
    let body = json!({"amount": amount, "reason": "test"});
    send(app, Method::POST, &app.admin_key, &path, Some(body)).await
}

async fn admin_post(app: &TestApp, path: &str, body: Option<Value>) -> Resp {
    send(app, Method::POST, &app.admin_key, path, body).await
}

async fn get_anon(app: &TestApp, path: &str) -> Resp {
    read(app.client.get(app.url(path)).send().await.expect("sent")).await
}

#[tokio::test]
async fn a_hundred_concurrent_creates_with_credits_for_ten_accept_exactly_ten() {
    let app = priced_app(3, |cfg| cfg.limits.max_active = 0).await;
    let key = app.key_for("buyer").await;
    assert_eq!(grant(&app, "buyer", 30).await.status, 201);
    let mut racers = Vec::new();
    for i in 0..100 {
        let (client, url, key) = (app.client.clone(), app.url("/v1/tasks"), key.clone());
        racers.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&prompt(&format!("p{i}")))
                .send()
                .await
                .expect("sent");
            read(r).await
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for r in racers {
        let r = r.await.unwrap();
        match r.status {
            202 => accepted += 1,
            402 => {
                assert_eq!(r.error().0, "insufficient_credits");
                assert_eq!(r.body["error"]["price"], 3, "{}", r.body);
                assert!(r.body["error"]["balance"].as_i64().unwrap() < 3);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!((accepted, refused), (10, 90));
    let balance = app.get_as(&key, "/v1/balance").await;
    assert_eq!(balance.body, json!({"balance": 0, "held": 30}));
    let ledger = app.get_as(&key, "/v1/ledger?limit=100").await;
    let entries = ledger.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 11, "{}", ledger.body);
    let sum: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, 0, "the balance is the ledger's sum");
    assert_eq!(entries.last().unwrap()["kind"], "grant");
    assert!(
        app.store
            .accounts()
            .ledger_drift()
            .await
            .unwrap()
            .is_empty()
    );
    // A cancel refunds what the task held.
    let task = entries[0]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(app.cancel_as(&key, &task).await.status, 200);
    let balance = app.get_as(&key, "/v1/balance").await;
    assert_eq!(balance.body, json!({"balance": 3, "held": 27}));
    let first = &app.get_as(&key, "/v1/ledger?limit=1").await.body["entries"][0];
    assert_eq!(
        (&first["kind"], &first["amount"], &first["task_id"]),
        (&json!("refund"), &json!(3), &json!(task))
    );
}

#[tokio::test]
async fn the_active_cap_admits_exactly_n_and_says_when_to_look_again() {
    let app = priced_app(0, |cfg| cfg.limits.max_active = 3).await;
    let mut racers = Vec::new();
    for i in 0..20 {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/tasks"),
            app.user_key.clone(),
        );
        racers.push(tokio::spawn(async move {
            read(
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&prompt(&format!("c{i}")))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }));
    }
    let mut accepted = Vec::new();
    for r in racers {
        let r = r.await.unwrap();
        if r.status == 202 {
            accepted.push(r.id());
            continue;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.error().0, "too_many_active_tasks");
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(r.header("ratelimit-policy"), Some("\"active\";q=3"));
        assert_eq!(r.header("ratelimit"), Some("\"active\";r=0"));
    }
    assert_eq!(accepted.len(), 3);
    // An idempotent replay of an accepted create is answered, not counted.
    let replayed = app
        .post_task_as(&app.user_key, &prompt("k"), Some("same"))
        .await;
    assert_eq!(replayed.status, 429, "the cap is full: {}", replayed.body);
    assert_eq!(app.cancel_as(&app.user_key, &accepted[0]).await.status, 200);
    let made = app
        .post_task_as(&app.user_key, &prompt("k"), Some("same"))
        .await;
    assert_eq!(made.status, 202, "{}", made.body);
    let again = app
        .post_task_as(&app.user_key, &prompt("k"), Some("same"))
        .await;
    assert_eq!(
        (again.status, again.id()),
        (202, made.id()),
        "{}",
        again.body
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn creates_per_minute_come_from_a_bucket_with_the_ratelimit_headers() {
    let app = priced_app(0, |cfg| {
        cfg.limits.max_active = 0;
        cfg.limits.creates_per_minute = 2;
    })
    .await;
    for i in 0..2 {
        assert_eq!(app.post_task(&prompt(&format!("r{i}"))).await.status, 202);
    }
    let r = app.post_task(&prompt("r3")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error().0, "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "a token every 30 s: {wait}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"minute\";q=2;w=60"));
    assert_eq!(
        r.header("ratelimit"),
        Some(format!("\"minute\";r=0;t={wait}").as_str())
    );
    // Another user has a bucket of their own.
    let other = app.key_for("other").await;
    assert_eq!(
        app.post_task_as(&other, &prompt("o"), None).await.status,
        202
    );
}

/// The actions of the audit trail's last 100 entries, newest first, after
/// checking that each of `wanted` is among them.
async fn audited(app: &TestApp, wanted: &[&str]) -> Vec<String> {
    let audit = app
        .get_as(&app.admin_key, "/v1/admin/audit?limit=100")
        .await;
    let actions: Vec<String> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for want in wanted {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} missing from {actions:?}"
        );
    }
    actions
}

/// Makes a browser token as `key` with `body`.
async fn token(app: &TestApp, key: &str, body: Value) -> String {
    let r = send(app, Method::POST, key, "/v1/tokens", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["expires_at"].is_string());
    r.body["token"].as_str().unwrap().to_owned()
}

/// An app whose provider is the simulator over HTTP, so that outputs are
/// copied into gengate's own storage (`/media/t/<task>/…`).
async fn copying_app() -> (TestApp, crate::http_provider::Mock) {
    let mock = crate::http_provider::spawn_mock(4, 20).await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        cfg.providers.get_mut("sim").unwrap().base_url = Some(http_url(&url));
    })
    .await;
    (app, mock)
}

#[tokio::test]
async fn a_browser_token_reads_its_task_alone_and_its_media() {
    let (app, _mock) = copying_app().await;
    let key = app.user_key.clone();
    let a = app.post_task(&prompt("a")).await.id();
    let b = app.post_task(&prompt("b")).await.id();
    let other = app.key_for("someone").await;
    let theirs = app.post_task_as(&other, &prompt("c"), None).await.id();
    for id in [&a, &b] {
        app.task_when(id, "succeeded", |t| t.status_text() == "succeeded")
            .await;
    }
    app.task_when_as(&other, &theirs, "succeeded", |t| {
        t.status_text() == "succeeded"
    })
    .await;
    let tok = token(&app, &key, json!({"task_id": a, "ttl_seconds": 60})).await;
    let q = |path: &str| format!("{path}?access_token={tok}");

    let seen = get_anon(&app, &q(&format!("/v1/tasks/{a}"))).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let by_header = app.get_as(&tok, &format!("/v1/tasks/{a}")).await;
    assert_eq!(by_header.status, 200);
    for hidden in [&b, &theirs] {
        let r = get_anon(&app, &q(&format!("/v1/tasks/{hidden}"))).await;
        assert_eq!(r.status, 404, "{}", r.body);
    }
    let list = get_anon(&app, &q("/v1/tasks")).await;
    assert_eq!((list.status, list.error().0), (403, "token_scope".into()));
    assert_eq!(app.get_as(&tok, "/v1/balance").await.status, 403);
    let write = send(&app, Method::POST, &tok, "/v1/tasks", Some(prompt("x"))).await;
    assert_eq!(
        (write.status, write.error().0),
        (403, "token_read_only".into())
    );

    // Media: the task's own with the token; nobody's private file without.
    let media = |t: &Resp| {
        let url = t.body["outputs"][0]["url"].as_str().unwrap();
        let bare = url.split('?').next().unwrap();
        bare[bare.find("/media/").unwrap()..].to_owned()
    };
    let (ma, mb) = (
        media(&app.get_task(&a).await),
        media(&app.get_task(&b).await),
    );
    let mine = app.client.get(app.url(&q(&ma))).send().await.unwrap();
    assert_eq!(mine.status(), 200);
    assert!(
        mine.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );
    assert_eq!(get_anon(&app, &q(&mb)).await.status, 404, "another task's");
    assert_eq!(get_anon(&app, &ma).await.status, 404, "no token");
    let theirs_media = media(&app.get_as(&other, &format!("/v1/tasks/{theirs}")).await);
    assert_eq!(get_anon(&app, &q(&theirs_media)).await.status, 404);
    assert_eq!(app.get_as(&key, &ma).await.status, 200, "the owner's key");

    // The event stream takes the token in the query, as EventSource must.
    let sse = app
        .client
        .get(app.url(&q(&format!("/v1/tasks/{a}/events"))))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(
        sse.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    // Forged, expired, or an API key in the URL: refused.
    let mut forged = tok.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = get_anon(&app, &format!("/v1/tasks/{a}?access_token={forged}")).await;
    assert_eq!(r.status, 401);
    let r = get_anon(&app, &format!("/v1/tasks/{a}?access_token={key}")).await;
    assert_eq!((r.status, r.error().1), (401, Some("access_token".into())));
    let short = token(&app, &key, json!({"ttl_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_as(&short, "/v1/tasks").await.status, 401);

    // A token for all of a user's tasks lists them, and only them.
    let all = token(&app, &key, json!({})).await;
    let listed = app.get_as(&all, "/v1/tasks").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    for bad in [
        json!({"ttl_seconds": 0}),
        json!({"ttl_seconds": 86_401}),
        json!({"task_id": theirs}),
        json!({"extra": 1}),
    ] {
        let r = send(&app, Method::POST, &key, "/v1/tokens", Some(bad.clone())).await;
        assert!(matches!(r.status, 404 | 422), "{bad}: {}", r.body);
    }
    let admin = send(&app, Method::POST, &app.admin_key, "/v1/tokens", None).await;
    assert_eq!(admin.status, 403);
    let empty = send(&app, Method::POST, &key, "/v1/tokens", None).await;
    assert_eq!(empty.status, 201, "no body: a token for every task");
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let app = spawn_app_with(|cfg| {
        cfg.server.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/v1/tasks"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"));

    let evil = preflight("https://evil.example").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());

    let get = app
        .client
        .get(app.url("/v1/models"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    let h = get.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("retry-after") && exposed.contains("ratelimit"));

    // Without configured origins there are no CORS headers at all.
    let plain = spawn_app().await;
    let r = plain
        .client
        .get(plain.url("/v1/models"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn admins_manage_users_keys_and_credits_and_every_step_is_audited() {
    let app = priced_app(2, |cfg| cfg.limits.max_active = 5).await;
    let admin = app.admin_key.clone();
    let alice = app.key_for("alice").await;
    assert_eq!(grant(&app, "alice", 4).await.status, 201);
    assert_eq!(
        app.post_task_as(&alice, &prompt("x"), None).await.status,
        202
    );

    let user = app.get_as(&admin, "/v1/admin/users/alice").await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(
        (
            &user.body["balance"],
            &user.body["held"],
            &user.body["active"]
        ),
        (&json!(2), &json!(2), &json!(1))
    );
    assert_eq!(user.body["limits"]["max_active"], 5);
    let users = app.get_as(&admin, "/v1/admin/users?limit=1").await;
    assert_eq!(users.body["users"].as_array().unwrap().len(), 1);
    let next = users.body["next_cursor"].as_str().unwrap();
    let page2 = app
        .get_as(&admin, &format!("/v1/admin/users?limit=100&cursor={next}"))
        .await;
    assert!(!page2.body["users"].as_array().unwrap().is_empty());

    // Limits of her own, then disabled.
    let patch = |body: Value| {
        send(
            &app,
            Method::PATCH,
            &admin,
            "/v1/admin/users/alice",
            Some(body),
        )
    };
    let r = patch(json!({"max_active": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["limits"]["max_active"], 1);
    assert_eq!(r.body["own_limits"], json!(["max_active"]));
    let capped = app.post_task_as(&alice, &prompt("y"), None).await;
    assert_eq!(capped.error().0, "too_many_active_tasks");
    let r = patch(json!({"max_active": null, "disabled": true})).await;
    assert_eq!(
        (&r.body["disabled"], &r.body["own_limits"]),
        (&json!(true), &json!([]))
    );
    let off = app.post_task_as(&alice, &prompt("z"), None).await;
    assert_eq!((off.status, off.error().0), (403, "user_disabled".into()));
    assert_eq!(patch(json!({"disabled": "yes"})).await.status, 422);
    patch(json!({"disabled": false})).await;

    // Credits: taken back, not below zero, for a real user, with a reason.
    assert_eq!(grant(&app, "alice", -2).await.status, 201);
    let over = grant(&app, "alice", -1).await;
    assert_eq!(
        (over.status, over.error().0),
        (409, "insufficient_credits".into())
    );
    assert_eq!(grant(&app, "nobody", 5).await.status, 404);
    assert_eq!(grant(&app, "alice", 0).await.status, 422);
    let no_reason = json!({"amount": 5, "reason": " "});
    let r = admin_post(&app, "/v1/admin/users/alice/credits", Some(no_reason)).await;
    assert_eq!(r.error().1, Some("reason".into()));

    // Keys: listed without secrets, revoked, then refused.
    let keys = app.get_as(&admin, "/v1/admin/keys").await;
    let listed = keys.body.as_array().unwrap();
    let hers = listed
        .iter()
        .find(|k| alice.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap();
    assert_eq!(hers["user"], "alice");
    assert!(hers.get("key").is_none() && hers["prefix"].is_string());
    let revoke = format!("/v1/admin/keys/{}", hers["id"]);
    let r = send(&app, Method::DELETE, &admin, &revoke, None).await;
    assert_eq!(r.status, 204);
    let r = send(&app, Method::DELETE, &admin, &revoke, None).await;
    assert_eq!(r.status, 404, "already revoked");
    wait_until(
        "the revoked key refused",
        Duration::from_secs(5),
        || async { (app.get_as(&alice, "/v1/tasks").await.status == 401).then_some(()) },
    )
    .await;

    // The trail: every admin action and every movement of credits.
    let actions = audited(
        &app,
        &["key.revoke", "user.patch", "credits.grant", "credits.hold"],
    )
    .await;
    let small = app.get_as(&admin, "/v1/admin/audit?limit=2").await;
    let cursor = small.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get_as(
            &admin,
            &format!("/v1/admin/audit?limit=100&cursor={cursor}"),
        )
        .await;
    assert_eq!(
        rest.body["entries"].as_array().unwrap().len() + 2,
        actions.len(),
        "pages neither skip nor repeat"
    );
    let bad = app.get_as(&admin, "/v1/admin/audit?cursor=nope").await;
    assert_eq!(bad.status, 422);
    // Users cannot reach any of it.
    let bob = app.key_for("bob").await;
    for path in ["/v1/admin/users", "/v1/admin/keys", "/v1/admin/audit"] {
        assert_eq!(app.get_as(&bob, path).await.status, 403, "{path}");
    }
}

#[tokio::test]
async fn a_service_keys_end_users_have_credits_of_their_own() {
    let app = priced_app(1, |_| {}).await;
    let shop = make_key(&*app.store, "shop", Role::Service).await;
    let as_end_user = |who: &'static str, method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&shop)
            .header("X-Gengate-User", who)
    };
    let create = |who: &'static str| {
        let req = as_end_user(who, Method::POST, "/v1/tasks").json(&prompt("e"));
        async move { read(req.send().await.unwrap()).await }
    };
    assert_eq!(create("alice").await.status, 402, "a new end user has 0");
    assert_eq!(grant(&app, "shop%2Falice", 1).await.status, 201);
    assert_eq!(create("alice").await.status, 202);
    assert_eq!(create("bob").await.status, 402, "bob's are his own");
    let balance = read(
        as_end_user("alice", Method::GET, "/v1/balance")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(balance.body, json!({"balance": 0, "held": 1}));
}

/// The admin's stats line of provider `name`.
async fn lane(app: &TestApp, name: &str) -> Value {
    let stats = app.get_as(&app.admin_key, "/v1/admin/stats").await;
    stats.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no provider {name}: {}", stats.body))
}

#[tokio::test]
async fn admins_search_hide_retry_cancel_in_bulk_and_pause_a_provider() {
    let app = spawn_app().await;
    let admin = app.admin_key.clone();
    let bob = app.key_for("bob").await;
    let public = json!({"model": "sim-image", "input": {"prompt": "shown"}, "public": true});
    let shown = app.post_task(&public).await.id();
    let private = app.post_task(&prompt("mine")).await.id();
    for id in [&shown, &private] {
        app.task_when(id, "succeeded", |t| t.status_text() == "succeeded")
            .await;
    }

    // Search across users.
    let found = app
        .get_as(&admin, "/v1/admin/tasks?status=succeeded&provider=sim")
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["data"].as_array().unwrap().len(), 2);
    assert!(found.body["data"][0]["user_id"].is_i64());
    let none = app
        .get_as(&admin, "/v1/admin/tasks?created_from=2999-01-01T00:00:00Z")
        .await;
    assert!(none.body["data"].as_array().unwrap().is_empty());
    let past = app
        .get_as(&admin, "/v1/admin/tasks?created_to=2000-01-01T00:00:00Z")
        .await;
    assert!(past.body["data"].as_array().unwrap().is_empty());
    for (query, status) in [
        ("created_from=yesterday", 422),
        ("provider=nope", 404),
        ("user=nobody", 404),
        ("status=lost", 422),
        ("limit=0", 422),
    ] {
        let r = app
            .get_as(&admin, &format!("/v1/admin/tasks?{query}"))
            .await;
        assert_eq!(r.status, status, "{query}: {}", r.body);
    }
    let bobs = app.get_as(&admin, "/v1/admin/tasks?user=bob").await;
    assert!(bobs.body["data"].as_array().unwrap().is_empty());

    // Hide from the gallery.
    let gallery = |app: &TestApp| {
        let url = app.url("/v1/gallery");
        let client = app.client.clone();
        async move { read(client.get(url).send().await.unwrap()).await }
    };
    assert_eq!(
        gallery(&app).await.body["data"].as_array().unwrap().len(),
        1
    );
    let hidden = admin_post(&app, &format!("/v1/admin/tasks/{shown}/hide"), None).await;
    assert_eq!(
        (hidden.status, &hidden.body["public"]),
        (200, &json!(false))
    );
    assert!(
        gallery(&app).await.body["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Pause: queued tasks wait on every path; resume lets them go.
    let pause = admin_post(&app, "/v1/admin/providers/sim/pause", None).await;
    assert_eq!(pause.status, 204);
    assert_eq!(lane(&app, "sim").await["paused"], true);
    let waiting: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                app.post_task_as(&bob, &prompt(&format!("w{i}")), None)
                    .await
                    .id(),
            );
        }
        ids
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &waiting {
        let t = app.get_as(&bob, &format!("/v1/tasks/{id}")).await;
        assert_eq!(
            (t.status_text(), &t.body["attempts"]),
            ("queued", &json!(0))
        );
    }
    let missing = admin_post(&app, "/v1/admin/providers/nope/pause", None).await;
    assert_eq!(missing.status, 404);

    // Bulk cancel by owner; a filterless one is refused.
    let all = admin_post(&app, "/v1/admin/tasks/cancel", Some(json!({}))).await;
    assert_eq!(all.status, 422);
    let bulk = admin_post(&app, "/v1/admin/tasks/cancel", Some(json!({"user": "bob"}))).await;
    assert_eq!(
        bulk.body,
        json!({"canceled": 3, "already_finished": 0}),
        "{}",
        bulk.body
    );

    // Retry a canceled task as a new one, once.
    let retry = |id: String| {
        let path = format!("/v1/admin/tasks/{id}/retry");
        let (app, admin) = (&app, &admin);
        async move { send(app, Method::POST, admin, &path, None).await }
    };
    let first = retry(waiting[0].clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = retry(waiting[0].clone()).await;
    assert_eq!((again.status, again.id()), (200, first.id()));
    assert_eq!(first.body["input"]["prompt"], "w0");
    assert_eq!(retry(private.clone()).await.status, 409, "it succeeded");

    let resume = admin_post(&app, "/v1/admin/providers/sim/resume", None).await;
    assert_eq!(resume.status, 204);
    app.task_when_as(&bob, &first.id(), "the retry to run", |t| {
        t.status_text() == "succeeded"
    })
    .await;

    audited(
        &app,
        &[
            "task.hide",
            "provider.pause",
            "tasks.cancel",
            "task.retry",
            "provider.resume",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_daily_spending_cap_makes_a_providers_tasks_wait() {
    let app = spawn_app_with(|cfg| {
        cfg.providers.get_mut("sim").unwrap().daily_credits = Some(3);
        cfg.models.get_mut("sim-image").unwrap().price = Some(Price::Flat(2));
    })
    .await;
    let user = app.user_key.clone();
    // The test app's user key is alice's.
    assert_eq!(grant(&app, "alice", 10).await.status, 201);
    for (i, spent) in [(0, 2), (1, 4)] {
        let id = app
            .post_task_as(&user, &prompt(&format!("d{i}")), None)
            .await
            .id();
        app.task_when(&id, "succeeded", |t| t.status_text() == "succeeded")
            .await;
        wait_until("the spending read", Duration::from_secs(5), || async {
            (lane(&app, "sim").await["spent_today"] == spent).then_some(())
        })
        .await;
    }
    let third = app.post_task_as(&user, &prompt("d2"), None).await;
    assert_eq!(third.status, 202, "creates go on: {}", third.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = app.get_task(&third.id()).await;
    assert_eq!(
        (t.status_text(), &t.body["attempts"]),
        ("queued", &json!(0))
    );
    let l = lane(&app, "sim").await;
    assert_eq!(
        (&l["spent_today"], &l["daily_credits"]),
        (&json!(4), &json!(3))
    );
}
