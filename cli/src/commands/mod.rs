//! The command groups, one module each.

pub mod admin;
pub mod bench;
pub mod crashtest;
pub mod data;
pub mod inspect;
pub mod io;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar of `len` steps drawn with `template` on stderr, or a hidden one when
/// stderr is not a terminal (so piped output and tests stay clean).
fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
