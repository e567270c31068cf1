//! Tests of the real `gengate` binary: crash safety under `kill -9`, and the
//! command line as a newcomer uses it. One binary, one module per area.

mod cli;
mod cluster;
mod crash;
mod process;
mod proxy;
