//! The kling mock (to be written).

use axum::Router;

use super::{Account, MockConfig, with_common_routes};

/// The mock's HTTP routes.
pub fn router(cfg: MockConfig) -> Router {
    let account = Account::new(cfg);
    with_common_routes(Router::new(), account)
}
