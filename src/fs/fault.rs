//! In-memory filesystem with fault injection (to be written).
