//! The command groups, one module each.

pub mod admin;
pub mod bench;
pub mod data;
pub mod inspect;
pub mod io;
