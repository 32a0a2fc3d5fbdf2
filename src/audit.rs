//! The audit trail: one JSON line per security event (grants issued, refreshed and revoked,
//! failed logins with their real cause, lockouts and unlocks, administration changes). It
//! carries token digests, never tokens.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::SharedClock;
use crate::token::TokenDigest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// "" = `<data-dir>/audit.log`; "-" = standard output; "off" = no audit trail.
    pub path: String,
    /// Refuse requests (503) when an event cannot be written. On by default, as Vault's audit
    /// devices are: a grant nobody can account for must not be issued.
    pub fail_closed: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            fail_closed: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit trail cannot be written: {0}")]
pub struct AuditError(String);

#[derive(Debug)]
enum Sink {
    Off,
    Stdout,
    File(Mutex<std::fs::File>, PathBuf),
}

/// One event. Optional fields are left out when empty.
#[derive(Debug, Default, Serialize)]
pub struct Event<'a> {
    pub event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

fn open_trail(path: &Path) -> Result<std::fs::File, AuditError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map_err(|e| AuditError(format!("{}: {e}", path.display())))
}

pub fn hex(d: &TokenDigest) -> String {
    d.to_hex()
}

#[derive(Debug)]
pub struct Audit {
    sink: Sink,
    fail_closed: bool,
    clock: SharedClock,
}

impl Audit {
    pub fn open(
        cfg: &AuditConfig,
        data_dir: &Path,
        clock: SharedClock,
    ) -> Result<Self, AuditError> {
        let sink = match cfg.path.as_str() {
            "off" => Sink::Off,
            "-" => Sink::Stdout,
            p => {
                let path = if p.is_empty() {
                    data_dir.join("audit.log")
                } else {
                    PathBuf::from(p)
                };
                let f = open_trail(&path)?;
                Sink::File(Mutex::new(f), path)
            }
        };
        Ok(Self {
            sink,
            fail_closed: cfg.fail_closed,
            clock,
        })
    }

    /// A trail that records nothing (for tests of other things and for admin commands).
    pub fn off(clock: SharedClock) -> Self {
        Self {
            sink: Sink::Off,
            fail_closed: false,
            clock,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File(_, p) => Some(p),
            _ => None,
        }
    }

    /// Opens the trail's file again (after log rotation moved it away: SIGHUP). On failure the
    /// old file stays in use.
    pub fn reopen(&self) -> Result<(), AuditError> {
        if let Sink::File(f, path) = &self.sink {
            let new = open_trail(path)?;
            match f.lock() {
                Ok(mut f) => *f = new,
                Err(_) => return Err(AuditError("audit file lock poisoned".into())),
            }
        }
        Ok(())
    }

    /// Writes one event. A failure is an error only when the trail fails closed; otherwise it
    /// is logged and the request goes on.
    pub fn record(&self, ev: &Event<'_>) -> Result<(), AuditError> {
        let now = self.clock.now();
        let mut line = serde_json::json!({
            "time": crate::wire_time::iso8601(now),
            "unix_time": now,
        });
        if let (Some(obj), Ok(Value::Object(fields))) =
            (line.as_object_mut(), serde_json::to_value(ev))
        {
            obj.extend(fields);
        }
        let mut text = line.to_string();
        text.push('\n');
        let written = match &self.sink {
            Sink::Off => Ok(()),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            }
            Sink::File(f, _) => match f.lock() {
                Ok(mut f) => f.write_all(text.as_bytes()),
                Err(_) => Err(std::io::Error::other("audit file lock poisoned")),
            },
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) if self.fail_closed => Err(AuditError(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "audit event lost");
                Ok(())
            }
        }
    }
}
