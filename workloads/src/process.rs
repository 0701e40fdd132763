//! What the kernel counts for this process: bytes written to storage and peak memory.
//!
//! Both are read from `/proc/self` and so measure every engine the same way, whatever it
//! reports about itself. Elsewhere than on Linux they are `None`.

use std::path::Path;

/// Bytes this process (all its threads, living or exited) has caused to be written to
/// storage: `write_bytes` of `/proc/self/io`. The kernel charges a page when it is first
/// dirtied, so the count includes WAL and table bytes whether or not they were synced.
pub fn storage_write_bytes() -> Option<u64> {
    proc_field("/proc/self/io", "write_bytes:")
}

/// Peak resident set of this process in bytes: `VmHWM` of `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_field("/proc/self/status", "VmHWM:").map(|kib| kib * 1024)
}

/// The number after `label` in a `label value [unit]` line of a `/proc` file.
fn proc_field(file: &str, label: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(label))?;
    line[label.len()..].split_whitespace().next()?.parse().ok()
}

/// Bytes of every file under `dir`, recursively: the database's footprint on disk.
pub fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { disk_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn counters_move_with_the_process() {
        let rss = peak_rss_bytes().unwrap();
        assert!(rss > 0);
        let before = storage_write_bytes().unwrap();
        // In the source tree rather than the temporary directory, which may be a tmpfs
        // (whose pages never reach storage and are not counted).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!(".process-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let data = vec![7u8; 1 << 20];
        std::fs::write(dir.join("a"), &data).unwrap();
        std::fs::write(dir.join("sub/b"), &data[..1000]).unwrap();
        assert_eq!(disk_bytes(&dir).unwrap(), (1 << 20) + 1000);
        let written = storage_write_bytes().unwrap() - before;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(written >= 1 << 20, "{written}");
    }
}
