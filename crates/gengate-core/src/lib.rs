//! gengate's domain: what a task is, how it may change (the lifecycle state
//! machine), how queued work is ordered (scheduling policy), and what a model
//! accepts as input. Plain Rust with no I/O, no clock reads and no async, so
//! every rule here can be tested exhaustively; the store, providers and server
//! crates carry these decisions out.

pub mod billing;
pub mod id;
pub mod lifecycle;
pub mod mapping;
pub mod mime;
pub mod model;
pub mod policy;
pub mod task;
pub mod time;
pub mod units;

pub use billing::{Billing, LedgerKind, Limits, Price, RefundOn, Refusal};
pub use lifecycle::{Effect, Event, Fence, IllegalTransition, apply};
pub use model::{FieldSpec, InputError, ModelKind, ModelSpec};
pub use task::{Output, Role, Status, Task, TaskError, TaskId, UserId};
