//! Fresh databases on the test servers (PostgreSQL and MariaDB), one per
//! test, reached with their command-line clients for checks the API does
//! not show.

use std::process::Command;

/// A database server engine gengate supports beside SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    MariaDb,
    Postgres,
}

impl Engine {
    /// The environment variable that names the engine's test server.
    pub fn var(self) -> &'static str {
        match self {
            Engine::MariaDb => "TEST_MYSQL_URL",
            Engine::Postgres => "TEST_POSTGRES_URL",
        }
    }
}

/// A new, empty database on a test server.
#[derive(Debug, Clone)]
pub struct FreshDb {
    pub engine: Engine,
    /// The store URL gengate uses for it.
    pub url: String,
}

impl FreshDb {
    /// Creates a database named `{prefix}_{pid}_{nanos}` on `engine`'s test
    /// server: `None` (skip) when the server's URL is not set outside CI
    /// (see [`crate::service_url`]).
    pub fn create(engine: Engine, prefix: &str) -> Option<FreshDb> {
        let base = crate::service_url(engine.var())?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .subsec_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let server = FreshDb {
            engine,
            url: base.clone(),
        };
        server.sql(&format!("CREATE DATABASE {name}"));
        Some(FreshDb {
            engine,
            url: with_database(&base, &name),
        })
    }

    /// Runs SQL with the engine's client; rows as tab-separated lines.
    ///
    /// # Panics
    /// When the client cannot run or the statement fails.
    pub fn sql(&self, q: &str) -> String {
        let out = match self.engine {
            Engine::Postgres => Command::new("psql")
                .args([
                    self.url.as_str(),
                    "-AtX",
                    "-F",
                    "\t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    q,
                ])
                .output(),
            Engine::MariaDb => {
                let (user, host, port, db) = parts(&self.url);
                Command::new("mysql")
                    .args([
                        "-N", "-B", "-h", &host, "-P", &port, "-u", &user, &db, "-e", q,
                    ])
                    .output()
            }
        }
        .expect("the database client runs");
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A query's single number.
    ///
    /// # Panics
    /// When the query fails or does not answer a number.
    pub fn count(&self, q: &str) -> u64 {
        self.sql(q)
            .parse()
            .unwrap_or_else(|_| panic!("{q} is not a count"))
    }
}

/// `url` naming database `name` instead of its own (its query kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (before_query, query) = rest
        .split_once('?')
        .map_or((rest, None), |(a, q)| (a, Some(q)));
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}/{name}{query}")
}

/// `scheme://user[:pw]@host:port/db?…` → (user, host, port, db).
fn parts(url: &str) -> (String, String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    let (auth, hostpart) = rest.split_once('@').unwrap_or(("root", rest));
    let user = auth.split(':').next().unwrap_or("root").to_owned();
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, "test"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (user, host.to_owned(), port.to_owned(), db.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_parts_and_change_database() {
        assert_eq!(
            parts("mysql://root@127.0.0.1:3306/test?ssl-mode=REQUIRED"),
            (
                "root".into(),
                "127.0.0.1".into(),
                "3306".into(),
                "test".into()
            )
        );
        assert_eq!(
            with_database("postgres://p@h:5432/test?sslmode=require", "x"),
            "postgres://p@h:5432/x?sslmode=require"
        );
        assert_eq!(with_database("mysql://root@h", "x"), "mysql://root@h/x");
    }
}
