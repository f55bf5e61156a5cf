//! The message ids a device accepted, kept on disk in a bounded window, so a listener that
//! restarts still refuses a delivery it accepted before.
//!
//! The file is one line of 32 hex digits per id, appended and flushed to disk before the
//! message is handed to the application. When it holds twice the window, it is rewritten
//! with the newest window (to a temporary file, then renamed).

use std::{
    collections::{HashSet, VecDeque},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

/// Ids remembered by default: a device's inbox and groups over hours.
pub const DEFAULT_WINDOW: usize = 8192;

/// Why the window cannot be read or extended.
#[derive(Debug, thiserror::Error)]
pub enum ReplayWindowError {
    #[error("replay window {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A bounded, durable set of accepted message ids.
pub struct ReplayWindow {
    path: PathBuf,
    file: File,
    order: VecDeque<[u8; 16]>,
    ids: HashSet<[u8; 16]>,
    window: usize,
    lines: usize,
}

impl ReplayWindow {
    /// Opens (or creates) the window at `path`, remembering at most `window` ids. Lines that
    /// are not ids (a torn last write) are skipped.
    pub fn open(path: &Path, window: usize) -> Result<Self, ReplayWindowError> {
        let io = |source| ReplayWindowError::Io {
            path: path.display().to_string(),
            source,
        };
        let window = window.max(1);
        let mut order = VecDeque::new();
        let mut lines = 0;
        let mut torn = false;
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for line in reader.split(b'\n') {
                let line = line.map_err(io)?;
                lines += 1;
                // A crash mid-append leaves a short last line: the next append must not
                // run on from it.
                torn = line.len() != 32;
                let line = String::from_utf8_lossy(&line);
                let mut id = [0u8; 16];
                if hex::decode_to_slice(line.trim(), &mut id).is_ok() {
                    order.push_back(id);
                    if order.len() > window {
                        order.pop_front();
                    }
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if torn {
            file.write_all(b"\n").map_err(io)?;
        }
        let ids = order.iter().copied().collect();
        Ok(ReplayWindow {
            path: path.to_path_buf(),
            file,
            order,
            ids,
            window,
            lines,
        })
    }

    /// Whether `id` was accepted before.
    pub fn contains(&self, id: &[u8; 16]) -> bool {
        self.ids.contains(id)
    }

    /// Records `id` as accepted, on disk first. Returns `false` (and writes nothing) when it
    /// was accepted before.
    pub fn accept(&mut self, id: [u8; 16]) -> Result<bool, ReplayWindowError> {
        if self.ids.contains(&id) {
            return Ok(false);
        }
        let line = format!("{}\n", hex::encode(id));
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| self.error(source))?;
        self.lines += 1;
        self.order.push_back(id);
        self.ids.insert(id);
        if self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        if self.lines >= 2 * self.window {
            self.compact()?;
        }
        Ok(true)
    }

    fn error(&self, source: std::io::Error) -> ReplayWindowError {
        ReplayWindowError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Rewrites the file with the current window only.
    fn compact(&mut self) -> Result<(), ReplayWindowError> {
        let temp = self.path.with_extension("compact");
        let mut text = String::with_capacity(self.order.len() * 33);
        for id in &self.order {
            text.push_str(&hex::encode(id));
            text.push('\n');
        }
        let written = File::create(&temp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temp, &self.path))
            .and_then(|()| OpenOptions::new().append(true).open(&self.path));
        self.file = written.map_err(|source| self.error(source))?;
        self.lines = self.order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_window_still_refuses_what_it_accepted_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accepted.ids");
        let mut window = ReplayWindow::open(&path, 4).unwrap();
        for n in 0..3u8 {
            assert!(window.accept([n; 16]).unwrap());
        }
        assert!(!window.accept([1; 16]).unwrap());
        drop(window);

        let mut window = ReplayWindow::open(&path, 4).unwrap();
        assert!(window.contains(&[0; 16]) && window.contains(&[2; 16]));
        assert!(!window.accept([2; 16]).unwrap(), "replay after a restart");
        for n in 3..20u8 {
            assert!(window.accept([n; 16]).unwrap());
        }
        // Only the newest four are remembered, and the file was compacted.
        assert!(!window.contains(&[15; 16]));
        assert!(window.contains(&[16; 16]) && window.contains(&[19; 16]));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 8, "{lines} lines");
        drop(window);
        let window = ReplayWindow::open(&path, 4).unwrap();
        assert!(window.contains(&[19; 16]) && !window.contains(&[15; 16]));
    }

    #[test]
    fn a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accepted.ids");
        std::fs::write(&path, format!("{}\nabc", hex::encode([7u8; 16]))).unwrap();
        let mut window = ReplayWindow::open(&path, 16).unwrap();
        assert!(window.contains(&[7; 16]));
        assert!(window.accept([8; 16]).unwrap());
        drop(window);
        let window = ReplayWindow::open(&path, 16).unwrap();
        assert!(window.contains(&[7; 16]) && window.contains(&[8; 16]));
    }
}
