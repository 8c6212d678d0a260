//! `serve --record DIR`: every network message this server sends or receives, appended as one
//! NDJSON line `{"recorded_at","direction","action","url","body"}` to `DIR/traffic.ndjson`, in
//! the record format `ondc-rating check` reads (the line is made by the checker's own writer).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

pub use crate::checker::Direction;
use crate::checker::input::record_line;
use crate::clock::{SharedClock, ondc_timestamp};
use crate::protocol::Action;

/// Appends traffic records to a file.
pub struct TrafficLog {
    file: Mutex<std::fs::File>,
    clock: SharedClock,
}

impl TrafficLog {
    /// Opens (creating) `dir/traffic.ndjson` for appending.
    pub fn open(dir: &Path, clock: SharedClock) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("traffic.ndjson"))?;
        Ok(Self {
            file: Mutex::new(file),
            clock,
        })
    }

    /// Records one message; `body` is the exact bytes (recorded as JSON when they parse, else as
    /// a string of them).
    pub fn record(&self, direction: Direction, action: Action, url: &str, body: &[u8]) {
        let body: Value = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        let mut line = record_line(
            &ondc_timestamp(self.clock.now()),
            direction,
            action,
            url,
            &body,
        );
        line.push('\n');
        // One write of a whole line under the lock, so lines from concurrent requests never
        // interleave. A failing disk must not fail the exchange: log and go on.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "could not record traffic");
        }
    }
}
