//! gengate-bench against test servers on 127.0.0.1 whose behaviour the tests
//! control: known latencies, a stall, a fixed capacity. One binary, one
//! module per area. Each run lasts a few seconds at most.

mod bench;
mod capacity;
mod servers;
