//! Byte sizes as the capacity report writes them.

pub(super) fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / f64::from(1u32 << 20))
}

pub(super) fn kib(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}
