//! A database of one test's own on each backend: a SQLite file in a
//! temporary directory, or a fresh database on the server that
//! `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` names, dropped when the test ends.
//! Without the variable the test passes without running, unless `CI=true`:
//! there a backend that cannot be tested fails the run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use gengate_store::{OpenOptions, Store};
use gengate_testkit::db::with_database;
use gengate_testkit::service_url;
use sqlx::Connection as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

impl Kind {
    fn var(self) -> &'static str {
        match self {
            Kind::Sqlite => "",
            Kind::Postgres => "TEST_POSTGRES_URL",
            Kind::MySql => "TEST_MYSQL_URL",
        }
    }
}

/// The pool each test store gets: small, since tests run side by side
/// against one server.
pub(crate) const POOL: u32 = 4;

#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) kind: Kind,
    pub(crate) url: String,
    /// The server's URL and the database's name (networked backends).
    server: Option<(String, String)>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

static CLEANED: [AtomicBool; 3] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn server_url(kind: Kind) -> Option<String> {
    service_url(kind.var())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn connect<C: sqlx::Connection>(kind: Kind, url: &str) -> C {
    C::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the {kind:?} server at {url}: {e}"))
}

/// Runs `sql` on the database `url` names, outside any store.
pub(crate) async fn execute(kind: Kind, url: &str, sql: &str) {
    match kind {
        Kind::Postgres => {
            let mut c: sqlx::PgConnection = connect(kind, url).await;
            sqlx::Executor::execute(&mut c, sql).await.unwrap();
            c.close().await.unwrap();
        }
        Kind::MySql => {
            let mut c: sqlx::MySqlConnection = connect(kind, url).await;
            sqlx::Executor::execute(&mut c, sql).await.unwrap();
            c.close().await.unwrap();
        }
        Kind::Sqlite => {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let c = rusqlite::Connection::open(path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            c.execute_batch(sql).unwrap();
        }
    }
}

/// Test databases are `gg_<pid>_<n>_<unix ms>`: those of processes that
/// are gone (a run that was killed or panicked past its cleanup) are
/// dropped once they are an hour old.
async fn drop_abandoned(kind: Kind, server: &str) {
    let names: Vec<String> = match kind {
        Kind::Postgres => {
            let mut c: sqlx::PgConnection = connect(kind, server).await;
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'gg\\_%'")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
        Kind::MySql => {
            let mut c: sqlx::MySqlConnection = connect(kind, server).await;
            sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'gg\\_%'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect()
        }
        Kind::Sqlite => Vec::new(),
    };
    let hour_ago = now_ms() - 3_600_000;
    for name in names {
        let parts: Vec<&str> = name.split('_').collect();
        let (Some(pid), Some(made)) = (parts.get(1), parts.get(3)) else {
            continue;
        };
        let old = made.parse::<i64>().is_ok_and(|made| made < hour_ago);
        if old && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            drop_database(kind, server, &name).await;
        }
    }
}

async fn drop_database(kind: Kind, server: &str, name: &str) {
    let sql = match kind {
        Kind::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        _ => format!("DROP DATABASE IF EXISTS `{name}`"),
    };
    execute(kind, server, &sql).await;
}

impl Db {
    /// A new, empty database, migrated when `migrated`; `None` when the
    /// backend is not configured (outside CI).
    pub(crate) async fn fresh(kind: Kind, migrated: bool) -> Option<Db> {
        if kind == Kind::Sqlite {
            let dir = tempfile::tempdir().unwrap();
            return Some(Db {
                kind,
                url: format!("sqlite://{}", dir.path().join("t.db").display()),
                server: None,
                _dir: Some(Arc::new(dir)),
            });
        }
        let server = server_url(kind)?;
        if !CLEANED[kind as usize].swap(true, Ordering::Relaxed) {
            drop_abandoned(kind, &server).await;
        }
        let name = format!(
            "gg_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            now_ms()
        );
        let create = match kind {
            Kind::Postgres => format!("CREATE DATABASE \"{name}\""),
            _ => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        };
        execute(kind, &server, &create).await;
        let url = with_database(&server, &name);
        if migrated {
            gengate_store::migrate(&url, &options("migrate", Duration::from_secs(15)))
                .await
                .unwrap();
        }
        Some(Db {
            kind,
            url,
            server: Some((server, name)),
            _dir: None,
        })
    }

    /// A store on this database, as node `n1`.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        self.open_as("n1", Duration::from_secs(15)).await
    }

    /// A store on this database, as node `node` with leases of `lease`.
    pub(crate) async fn open_as(&self, node: &str, lease: Duration) -> Arc<dyn Store> {
        gengate_store::open_with(&self.url, &options(node, lease))
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }

    /// This database at the server `url` names, with `url`'s parameters
    /// (`sslmode=…`, `ssl-mode=…`).
    pub(crate) fn at(&self, url: &str) -> String {
        let (_, name) = self.server.as_ref().expect("a database on a server");
        with_database(url, name)
    }

    pub(crate) fn shared(&self) -> bool {
        self.kind != Kind::Sqlite
    }

    pub(crate) async fn drop(self) {
        if let Some((server, name)) = &self.server {
            drop_database(self.kind, server, name).await;
        }
    }
}

pub(crate) fn options(node: &str, lease: Duration) -> OpenOptions {
    OpenOptions {
        node_id: node.to_owned(),
        lease,
        pool_size: POOL,
        pool_timeout: Duration::from_secs(10),
        migrate: false,
        ca_file: None,
    }
}

/// Runs `check` on a fresh migrated database of `kind`, then drops the
/// database, whether the check passed or not.
pub(crate) async fn run<F, Fut>(kind: Kind, check: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = Db::fresh(kind, true).await else {
        return;
    };
    let outcome = tokio::spawn(check(db.clone())).await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
