//! The structured access log: one JSON line per proxied request, written
//! by a dedicated thread so that no request ever waits on the disk or on a
//! slow stdout reader. The queue between them is bounded; when it is full
//! the line is dropped and counted (`raftgate_access_log_dropped_total`).
//!
//! What a line holds is fixed by `Entry`: ids, names, numbers and the path
//! *without* its query string. No header, query value or body is ever
//! logged, so tokens, API keys and `Authorization` values cannot leak here.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use serde::Serialize;

/// Where access log lines go (`--access-log`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Target {
    /// Standard output (the default, as Kong's container images do).
    #[default]
    Stdout,
    /// Appended to a file.
    File(PathBuf),
    Off,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s.trim() {
            "" => Err("empty access log target".into()),
            "stdout" | "-" => Ok(Target::Stdout),
            "off" => Ok(Target::Off),
            path => Ok(Target::File(PathBuf::from(path))),
        }
    }
}

/// One request, as logged.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Entry {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub request_id: String,
    pub client_ip: Option<String>,
    pub method: String,
    /// Path only: the query string may hold credentials (`?apikey=`).
    pub path: String,
    pub route: Option<String>,
    pub service: Option<String>,
    pub consumer: Option<String>,
    pub status: u16,
    /// "service" when the upstream answered, "kong" when the gateway did.
    pub source: &'static str,
    pub latencies: Latencies,
    pub upstream: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// False when the client left or the upstream failed mid-body.
    pub complete: bool,
}

#[derive(Serialize, Debug, Default, Clone, Copy)]
pub struct Latencies {
    /// Whole request, first byte in to last byte out (ms).
    pub request: u64,
    /// Time spent waiting for the upstream's response head (ms).
    pub proxy: Option<u64>,
    /// Time the gateway and its plugins added (ms).
    pub kong: u64,
}

/// The sending half; cheap to share.
#[derive(Clone, Default)]
pub struct AccessLog {
    tx: Option<SyncSender<Vec<u8>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tx.is_some() {
            "AccessLog(on)"
        } else {
            "AccessLog(off)"
        })
    }
}

const QUEUE: usize = 8192;

impl AccessLog {
    /// A log that writes nothing.
    pub fn off() -> AccessLog {
        AccessLog { tx: None }
    }

    /// Opens the target and starts its writer thread.
    pub fn open(target: &Target) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            Target::Off => return Ok(AccessLog::off()),
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(&line);
                    // Flush when the queue is drained: lines appear promptly
                    // under light load, batched under heavy load.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(&more);
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(AccessLog { tx: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; never blocks.
    pub fn write(&self, entry: &Entry) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                super::metrics::global().access_log_dropped.inc();
            }
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds, without a date crate.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's well-known algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert!(now_rfc3339().ends_with('Z'));
    }

    #[test]
    fn targets() {
        assert_eq!("stdout".parse::<Target>(), Ok(Target::Stdout));
        assert_eq!("off".parse::<Target>(), Ok(Target::Off));
        assert_eq!(
            "/tmp/a.log".parse::<Target>(),
            Ok(Target::File("/tmp/a.log".into()))
        );
        assert!("".parse::<Target>().is_err());
    }

    #[test]
    fn file_target_gets_one_json_line_per_entry() {
        let dir = std::env::temp_dir().join(format!("rg-al-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("access.log");
        let log = AccessLog::open(&Target::File(path.clone())).unwrap();
        log.write(&Entry {
            path: "/a".into(),
            status: 200,
            ..Default::default()
        });
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["path"], "/a");
        let _ = std::fs::remove_dir_all(dir);
    }
}
