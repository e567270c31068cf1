//! Each adapter against its wire-compatible mock, over real HTTP on loopback.

mod hunyuan;
mod kling;
mod runninghub;
