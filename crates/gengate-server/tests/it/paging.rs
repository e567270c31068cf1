//! Listing: newest first, cursor paging, filters, user isolation, gallery.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn cursor_paging_walks_every_task_once_newest_first() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(app.post_task(&prompt(&format!("p{i}"))).await.id());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=10&cursor={c}"),
            None => "/v1/tasks?limit=10".to_owned(),
        };
        let page = app.get_as(&app.user_key, &path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        for t in page.body["data"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(seen, created, "newest first, each exactly once");
}

#[tokio::test]
async fn filters_by_status_and_model_and_isolates_users() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.post_task(&prompt(&format!("img{i}"))).await;
    }
    app.post_task(&json!({"model": "sim-video", "input": {"prompt": "vid"}}))
        .await;
    app.dispatch_until_idle().await;
    let videos = app.get_as(&app.user_key, "/v1/tasks?model=sim-video").await;
    assert_eq!(videos.body["data"].as_array().unwrap().len(), 1);
    let done = app
        .get_as(&app.user_key, "/v1/tasks?status=succeeded&model=sim-image")
        .await;
    assert_eq!(done.body["data"].as_array().unwrap().len(), 3);
    let queued = app.get_as(&app.user_key, "/v1/tasks?status=queued").await;
    assert_eq!(queued.body["data"], json!([]));
    let bob = app.key_for("bob").await;
    assert_eq!(app.get_as(&bob, "/v1/tasks").await.body["data"], json!([]));
}

#[tokio::test]
async fn the_gallery_shows_only_public_succeeded_tasks_lean() {
    let app = spawn_app().await;
    let public = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "for all"}, "public": true}))
        .await
        .id();
    let private = app.post_task(&prompt("for me")).await.id();
    app.dispatch_until_idle().await;
    let canceled_public = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "gone"}, "public": true}))
        .await
        .id();
    app.cancel_as(&app.user_key, &canceled_public).await;
    app.dispatch_until_idle().await;

    // No key needed.
    let g = read(app.client.get(app.url("/v1/gallery")).send().await.unwrap()).await;
    assert_eq!(g.status, 200);
    let items = g.body["data"].as_array().unwrap();
    let ids: HashSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        HashSet::from([public.as_str()]),
        "not {private} nor {canceled_public}"
    );
    let item = &items[0];
    assert_eq!(item["prompt"], "for all");
    assert!(
        item.get("input").is_none(),
        "gallery objects are lean: {item}"
    );
    assert_eq!(g.header("cache-control"), Some("public, max-age=5"));
}

#[tokio::test]
async fn etags_answer_304_until_the_task_changes() {
    let app = spawn_app().await;
    let id = app.post_task(&prompt("etag")).await.id();
    app.dispatch_until_idle().await;
    let first = app.get_task(&id).await;
    let etag = first.header("etag").expect("etag").to_owned();
    assert_eq!(first.header("cache-control"), Some("private, no-cache"));
    let again = app
        .client
        .get(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&app.user_key)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    // A stale tag gets the full body.
    let stale = app
        .client
        .get(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&app.user_key)
        .header("if-none-match", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    // Lists and the gallery are cacheable too.
    for path in [
        "/v1/tasks",
        "/v1/gallery",
        "/v1/models",
        "/v1/webhooks/secret",
        &format!("/v1/tasks/{id}/webhooks"),
    ] {
        let r = app.get_as(&app.user_key, path).await;
        let tag = r.header("etag").expect("etag").to_owned();
        let again = app
            .client
            .get(app.url(path))
            .bearer_auth(&app.user_key)
            .header("if-none-match", tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    // A change makes a new tag.
    let other = app.post_task(&prompt("second")).await;
    assert_eq!(other.status, 202);
    let list = app
        .client
        .get(app.url("/v1/tasks"))
        .bearer_auth(&app.user_key)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
}

#[tokio::test]
async fn cached_pages_never_outlive_a_committed_change() {
    let app = spawn_app().await;
    let empty = read(app.client.get(app.url("/v1/gallery")).send().await.unwrap()).await;
    assert_eq!(empty.body["data"], json!([]));
    let mine = app.get_as(&app.user_key, "/v1/tasks").await;
    assert_eq!(mine.body["data"], json!([]));
    let id = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "fresh"}, "public": true}))
        .await
        .id();
    let listed = app.get_as(&app.user_key, "/v1/tasks").await;
    assert_eq!(
        listed.body["data"][0]["id"],
        id.as_str(),
        "a new task shows at once"
    );
    // Read as often as the wait allows: every pair of reads must agree.
    gengate_testkit::wait_for(
        "the listing to show it succeeded",
        std::time::Duration::from_secs(10),
        || async {
            // Gallery first: once it shows the task, a later listing must agree.
            let gallery = read(app.client.get(app.url("/v1/gallery")).send().await.unwrap()).await;
            let in_gallery = gallery.body["data"].as_array().unwrap().len() == 1;
            let page = app.get_as(&app.user_key, "/v1/tasks").await;
            let status = page.body["data"][0]["status"].as_str().unwrap().to_owned();
            assert!(
                !in_gallery || status == "succeeded",
                "gallery shows it, listing says {status}"
            );
            status == "succeeded"
        },
    )
    .await;
    let gallery = read(app.client.get(app.url("/v1/gallery")).send().await.unwrap()).await;
    assert_eq!(
        gallery.body["data"][0]["id"],
        id.as_str(),
        "and the gallery shows it once it succeeded"
    );
}
