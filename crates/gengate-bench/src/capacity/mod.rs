//! `gengate capacity`: ramps virtual users until the SLO breaks, measures what
//! the server spends per request, per user and per task, and turns those
//! measurements into the number of users each resource of the planned
//! server carries. The smallest is the binding limit.
//!
//! - `options`: what the command is told ([`CapacityOptions`], [`SpawnOptions`]).
//! - `measurement`: [`run`], the whole measurement, from finding or starting
//!   the server to the [`Report`].
//! - `ramp`: the search for the most users that meet the SLO, independent of
//!   what a step runs.
//! - `step`: running one step of the ramp, with the server's CPU and memory
//!   sampled, and whether it met the SLO ([`meets`]).
//! - `spawn`: a gengate and a mock provider started to be measured,
//!   optionally confined to N cores with `taskset`.
//! - `process`: the server's memory and CPU time, read from `/proc`.
//! - `probe`: memory per idle connection.
//! - [`model`]: pure arithmetic on measured numbers, unit-tested.
//! - `evaluation`: the model applied to a planned server: its limits, the
//!   answer for N users, what each upgrade would change.
//! - `report`: the report's data; `render` writes it as text, Markdown,
//!   self-contained HTML with the SVG charts of `chart`, or JSON.
//! - `sizes`: byte sizes as the report writes them.
//!
//! Memory and CPU are read from `/proc/PID` of the server, so they need its
//! pid: known when capacity starts the server (`--spawn`), or given with
//! `--server-pid`. Without it those two limits are left out, and said so.
//!
//! This file only declares and re-exports; the parts name each other
//! directly, so none of them imports this file back.

mod chart;
mod evaluation;
mod measurement;
pub mod model;
mod options;
mod probe;
mod process;
mod ramp;
mod render;
mod report;
mod sizes;
mod spawn;
mod step;

pub use chart::{Series, svg_chart};
pub use evaluation::{
    Answer, Evaluation, Limit, Measured, ProviderMeasure, Upgrade, answer, evaluate, upgrades,
};
pub use measurement::run;
pub use options::{CapacityOptions, SpawnOptions};
pub use process::{cpu_seconds, rss_bytes};
pub use ramp::{Ramp, ramp};
pub use report::{Report, ServerDescription};
pub use step::{Step, meets};

#[cfg(test)]
mod tests;
