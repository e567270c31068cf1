//! The shared stores over TLS, against the servers `.ci/run` sets up with a
//! CI certificate authority (`TEST_TLS_CA`): verified connections work when
//! the store trusts that CA (gengate's `tls.ca_file`) and are refused when
//! it does not; `require` encrypts without verifying.

use std::path::PathBuf;

use gengate_core::Role;
use gengate_store::OpenOptions;

use gengate_testkit::service_url;

use crate::db::{Db, Kind, options};

async fn over_tls(kind: Kind, tls_var: &str, encrypt_only: &str) {
    let (Some(tls_url), Some(ca)) = (service_url(tls_var), service_url("TEST_TLS_CA")) else {
        return;
    };
    let Some(db) = Db::fresh(kind, true).await else {
        return;
    };
    let verified = db.at(&tls_url);
    let trusting = OpenOptions {
        ca_file: Some(PathBuf::from(&ca)),
        ..options("tls", std::time::Duration::from_secs(15))
    };
    let outcome = async {
        let store = gengate_store::open_with(&verified, &trusting)
            .await
            .unwrap_or_else(|e| panic!("{verified} with the CA: {e}"));
        store
            .create_key("tls-user", Role::User, "hash-tls", "gg_tls0", 1)
            .await
            .unwrap();
        assert_eq!(store.list_keys().await.unwrap().len(), 1);

        // Without the CA the certificate cannot be verified: refused.
        let e = match gengate_store::open_with(&verified, &options("tls", trusting.lease)).await {
            Ok(_) => panic!("{verified} opened without trusting the CA"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
            "{e}"
        );

        // Encrypted but not verified: opens without the CA.
        let plain = db.at(&format!(
            "{}?{encrypt_only}",
            db.url.split('?').next().unwrap()
        ));
        gengate_store::open_with(&plain, &options("tls", trusting.lease))
            .await
            .unwrap_or_else(|e| panic!("{plain}: {e}"));
    }
    .await;
    db.drop().await;
    outcome
}

#[tokio::test]
async fn postgres_verify_full_trusts_tls_ca_file() {
    over_tls(Kind::Postgres, "TEST_POSTGRES_TLS_URL", "sslmode=require").await;
}

#[tokio::test]
async fn mysql_verify_identity_trusts_tls_ca_file() {
    over_tls(Kind::MySql, "TEST_MYSQL_TLS_URL", "ssl-mode=REQUIRED").await;
}
