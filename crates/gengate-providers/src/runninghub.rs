//! The runninghub adapter (to be written).
