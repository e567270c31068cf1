//! The hunyuan adapter (to be written).
