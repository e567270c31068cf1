//! Black-box tests of gengate's HTTP API over real sockets. One binary, one
//! module per area, to keep link time down.

mod helpers;

mod accounts;
mod end_users;
mod errors;
mod fairness;
mod http_provider;
mod idempotency;
mod lifecycle;
mod live;
mod media;
mod ops;
mod paging;
mod polling_budget;
mod providers;
mod tls;
mod uploads;
mod webhooks;
