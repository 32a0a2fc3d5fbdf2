//! The date styles of the VEDauth wire and the audit trail: .NET JSON dates and ISO 8601 to the
//! second, written straight into a serializer.

use serde::Serialize;

use crate::clock::UnixTime;

/// `/Date(ms)/`, the .NET JSON date style of verify and grant listings.
pub fn dotnet_date(t: UnixTime) -> String {
    DotnetDate(t).to_string()
}

/// ISO 8601 to the second with `Z`, the only layout vcert parses.
pub fn iso8601(t: UnixTime) -> String {
    Iso8601(t).to_string()
}

/// A .NET JSON date that writes itself straight into a serializer: verify renders three of
/// these per request, and a `String` each was an allocation each.
#[derive(Debug, Clone, Copy)]
pub struct DotnetDate(pub UnixTime);

impl std::fmt::Display for DotnetDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/Date({})/", self.0.saturating_mul(1000))
    }
}

impl Serialize for DotnetDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An ISO 8601 UTC time (`2021-06-16T10:31:38Z`) that writes itself like [`DotnetDate`];
/// empty for a time outside the representable range.
#[derive(Debug, Clone, Copy)]
pub struct Iso8601(pub UnixTime);

impl std::fmt::Display for Iso8601 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(d) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            ),
            Err(_) => Ok(()),
        }
    }
}

impl Serialize for Iso8601 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_styles() {
        assert_eq!(dotnet_date(1623839498), "/Date(1623839498000)/");
        assert_eq!(iso8601(1623839498), "2021-06-16T10:31:38Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(253402300799), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601(i64::MAX), "");
        assert_eq!(
            serde_json::to_string(&(DotnetDate(5), Iso8601(5)))
                .ok()
                .as_deref(),
            Some(r#"["/Date(5000)/","1970-01-01T00:00:05Z"]"#)
        );
    }
}
