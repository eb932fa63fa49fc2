//! RFC 3339 timestamps as milliseconds since the Unix epoch (UTC).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A timestamp that is not RFC 3339 or lies outside the supported range.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is not an RFC 3339 timestamp (e.g. 2026-11-26T02:00:00Z): {detail}", crate::excerpt(.text, 64))]
pub struct TimestampError {
    /// The text as given (excerpted when displayed).
    pub text: String,
    /// What is wrong with it.
    pub detail: String,
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, TimestampError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| TimestampError { text: text.to_owned(), detail: e.to_string() })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| TimestampError { text: text.to_owned(), detail: "out of range".to_owned() })
}

/// Parses an RFC 3339 timestamp, or a bare `YYYY-MM-DD` as that UTC day's
/// start (for report periods).
pub fn parse_day_or_rfc3339_ms(text: &str) -> Result<i64, TimestampError> {
    if text.len() == 10 && text.as_bytes().get(4) == Some(&b'-') {
        parse_rfc3339_ms(&format!("{text}T00:00:00Z"))
    } else {
        parse_rfc3339_ms(text)
    }
}

/// Formats with millisecond precision and a `Z` offset.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
            let (h, mi, s) = (t.hour(), t.minute(), t.second());
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", t.millisecond())
        }
        Err(_) => format!("@{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let ms = parse_rfc3339_ms("2026-11-26T02:00:01.250Z").unwrap();
        assert_eq!(ms, 1_795_658_401_250);
        assert_eq!(format_rfc3339_ms(ms), "2026-11-26T02:00:01.250Z");
    }

    #[test]
    fn honours_offsets() {
        let utc = parse_rfc3339_ms("2026-11-26T02:00:00Z").unwrap();
        let cet = parse_rfc3339_ms("2026-11-26T03:00:00+01:00").unwrap();
        assert_eq!(utc, cet);
    }

    #[test]
    fn accepts_bare_days() {
        assert_eq!(parse_day_or_rfc3339_ms("2026-11-26").unwrap(), parse_rfc3339_ms("2026-11-26T00:00:00Z").unwrap());
        assert!(parse_day_or_rfc3339_ms("2026-11-32").is_err());
    }

    #[test]
    fn rejects_garbage_with_the_text() {
        let err = parse_rfc3339_ms("yesterday").unwrap_err();
        assert!(err.to_string().contains("`yesterday`"), "{err}");
    }
}
