//! kling adapter against its mock (to be written).
