//! Uploads and signed media links, over real HTTP: each type stored and
//! served back, oversize, spoofed and over-large images refused before
//! anything is stored, a multipart form, and the signature's three
//! answers (none, expired or forged, valid).

use gengate_server::service::media_urls::MediaUrls;
use reqwest::header;
use serde_json::json;

use crate::helpers::*;

fn image(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 90]));
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

/// A file of a type uploads take, and its pixel size if it is an image.
type Sample = (&'static str, Vec<u8>, Option<(u64, u64)>);

/// One file of each type uploads take.
fn samples() -> Vec<Sample> {
    let mut gif = b"GIF89a\x0c\x00\x05\x00\x80\x00\x00".to_vec();
    gif.extend_from_slice(&[0; 16]);
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00".to_vec();
    wav.extend_from_slice(&[1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]);
    wav.extend_from_slice(b"data\x00\x00\x00\x00");
    vec![
        (
            "image/png",
            image(image::ImageFormat::Png, 20, 10),
            Some((20, 10)),
        ),
        (
            "image/jpeg",
            image(image::ImageFormat::Jpeg, 16, 24),
            Some((16, 24)),
        ),
        (
            "image/webp",
            image(image::ImageFormat::WebP, 8, 8),
            Some((8, 8)),
        ),
        ("image/gif", gif, Some((12, 5))),
        (
            "video/mp4",
            b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08free".to_vec(),
            None,
        ),
        (
            "video/quicktime",
            b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  \x00\x00\x00\x08wide".to_vec(),
            None,
        ),
        (
            "audio/mpeg",
            b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64\x00\x00".to_vec(),
            None,
        ),
        ("audio/wav", wav, None),
    ]
}

async fn upload(app: &TestApp, key: &str, content_type: &str, body: Vec<u8>) -> Resp {
    read(
        app.client
            .post(app.url("/v1/uploads"))
            .bearer_auth(key)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn each_type_is_stored_under_its_user_and_served_back() {
    let app = spawn_app().await;
    let bob = app.key_for("bob").await;
    for (content_type, bytes, size) in samples() {
        let r = upload(&app, &app.user_key, content_type, bytes.clone()).await;
        assert_eq!(r.status, 201, "{content_type}: {}", r.body);
        let b = &r.body;
        assert!(b["id"].as_str().unwrap().starts_with("upl_"), "{b}");
        assert_eq!(
            (b["content_type"].as_str(), b["bytes"].as_u64()),
            (Some(content_type), Some(bytes.len() as u64))
        );
        assert_eq!(
            size,
            b["width"].as_u64().zip(b["height"].as_u64()),
            "{content_type}"
        );
        assert!(b["expires_at"].is_string(), "{b}");
        let signed = b["url"].as_str().unwrap();
        let bare = signed.split('?').next().unwrap();
        assert!(
            bare.starts_with(&format!("{}/media/u/", app.base)),
            "{signed}"
        );
        let got = app.client.get(signed).send().await.unwrap();
        assert_eq!(got.status(), 200, "the signed link opens it");
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
        assert_eq!(app.client.get(bare).send().await.unwrap().status(), 404);
        let owner = app
            .get_as(&app.user_key, &bare.replace(&app.base, ""))
            .await;
        assert_eq!(owner.status, 200, "its owner's key");
        let other = app.get_as(&bob, &bare.replace(&app.base, "")).await;
        assert_eq!(other.status, 404, "another user's key");
    }
}

#[tokio::test]
async fn bad_uploads_are_refused_before_anything_is_stored() {
    let app = spawn_app_with(|cfg| {
        cfg.media.upload_max_bytes = gengate_config::Bytes(4096);
        cfg.media.upload_max_pixels = 1000;
    })
    .await;
    let uploads = app.config.media_dir().join("u");
    let refused = |r: &Resp| (r.status, r.error().0);
    let big = image(image::ImageFormat::Png, 20, 20);
    let r = upload(&app, &app.user_key, "image/png", vec![0x89; 5000]).await;
    assert_eq!(refused(&r), (413, "payload_too_large".into()));
    let r = upload(&app, &app.user_key, "image/png", big.clone()).await;
    assert_eq!(r.status, 201, "400 pixels: {}", r.body);
    let wide = image(image::ImageFormat::Png, 40, 30);
    let r = upload(&app, &app.user_key, "image/png", wide).await;
    assert_eq!(refused(&r), (422, "too_many_pixels".into()));
    let jpeg = image(image::ImageFormat::Jpeg, 8, 8);
    let r = upload(&app, &app.user_key, "image/png", jpeg).await;
    assert_eq!(refused(&r), (422, "content_type_mismatch".into()));
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let r = upload(&app, &app.user_key, "image/png", html.clone()).await;
    assert_eq!(refused(&r), (422, "unrecognized_content".into()));
    let r = upload(&app, &app.user_key, "text/html", html).await;
    assert_eq!(refused(&r), (415, "unsupported_media_type".into()));
    let r = upload(
        &app,
        &app.user_key,
        "image/png",
        b"\x89PNG\r\n\x1a\n".to_vec(),
    )
    .await;
    assert_eq!(refused(&r), (422, "unreadable_image".into()));
    let r = read(
        app.client
            .post(app.url("/v1/uploads"))
            .header(header::CONTENT_TYPE, "image/png")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    let stored: Vec<_> = walk(&uploads);
    assert_eq!(stored.len(), 1, "only the one good upload: {stored:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

#[tokio::test]
async fn a_multipart_form_uploads_its_file_part_which_a_task_then_takes() {
    let app = spawn_app().await;
    let png = image(image::ImageFormat::Png, 6, 4);
    let mut form =
        b"--b0undary\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nfirst frame\r\n\
--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.png\"\r\n\
Content-Type: image/png\r\n\r\n"
            .to_vec();
    form.extend_from_slice(&png);
    form.extend_from_slice(b"\r\n--b0undary--\r\n");
    let r = upload(
        &app,
        &app.user_key,
        "multipart/form-data; boundary=b0undary",
        form,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["bytes"], png.len());
    assert_eq!(
        (r.body["width"].as_u64(), r.body["height"].as_u64()),
        (Some(6), Some(4))
    );
    let url = r.body["url"].as_str().unwrap();
    let task = app
        .post_task(&json!({"model": "sim-video", "input": {"prompt": "waves", "image_url": url}}))
        .await;
    assert_eq!(task.status, 202, "{}", task.body);
    app.dispatch_until_idle().await;
    assert_eq!(app.get_task(&task.id()).await.status_text(), "succeeded");
}

#[tokio::test]
async fn a_private_output_needs_a_valid_unexpired_signature_or_its_owner() {
    let app = spawn_app().await;
    let id = app.post_task(&prompt("private")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    let signed = t.body["outputs"][0]["url"].as_str().unwrap().to_owned();
    let thumb = t.body["outputs"][0]["thumbnail_url"].as_str().unwrap();
    let bare = signed.split('?').next().unwrap().to_owned();
    let key = app
        .store
        .accounts()
        .setting("token_key", None)
        .await
        .unwrap()
        .expect("the signing key is made at start");
    let urls = MediaUrls::new(&hex::decode(key).unwrap(), &app.url("/media"));
    let status = |url: String| {
        let c = app.client.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            let s = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (
                s,
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    assert_eq!(status(bare.clone()).await, (404, "not_found".into()));
    let expired = urls.sign_until(&bare, gengate_server::now_ms() / 1000 - 1);
    assert_eq!(status(expired).await, (403, "signature_expired".into()));
    let forged = signed.replace("sig=", "sig=A");
    assert_eq!(status(forged).await, (403, "bad_signature".into()));
    let moved = urls.sign_until(&bare, gengate_server::now_ms() / 1000 + 60);
    let other_path = moved.replace("/0.", "/1.");
    assert_eq!(
        status(other_path).await.0,
        403,
        "a signature covers its path only"
    );
    assert_eq!(status(moved).await.0, 200, "one signed for a minute");
    assert_eq!(status(signed.clone()).await.0, 200);
    assert_eq!(
        status(thumb.to_owned()).await.0,
        200,
        "its thumbnail's link too"
    );

    // In the gallery, links are plain and public.
    let shown = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "shown"}, "public": true}))
        .await
        .id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&shown).await;
    let url = t.body["outputs"][0]["url"].as_str().unwrap();
    assert!(!url.contains('?'), "{url}");
    let r = app.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
}
