//! The kling adapter (to be written).
