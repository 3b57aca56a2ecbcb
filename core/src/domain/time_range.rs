//! A half-open UTC time window `[start, end)` whose end is after its start.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ParseError;

/// A time window with `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeRange {
    /// Builds a window.
    ///
    /// # Errors
    /// A [`ParseError`] on field `end_date` when `end` is not after `start`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ParseError> {
        if end <= start {
            return Err(ParseError::new(
                "end_date",
                format!(
                    "{} must be after start_date {}",
                    end.to_rfc3339(),
                    start.to_rfc3339()
                ),
            ));
        }
        Ok(Self { start, end })
    }

    /// Parses two RFC 3339 timestamps (any offset; stored in UTC).
    ///
    /// # Errors
    /// A [`ParseError`] naming `start_date` or `end_date` when one is not RFC 3339, or
    /// `end_date` when the end is not after the start.
    pub fn parse(start: &str, end: &str) -> Result<Self, ParseError> {
        let parse = |field: &'static str, value: &str| {
            DateTime::parse_from_rfc3339(value.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ParseError::new(
                        field,
                        format!("{value:?} is not an RFC 3339 timestamp ({e}); example: 2026-11-29T08:00:00-03:00"),
                    )
                })
        };
        Self::new(parse("start_date", start)?, parse("end_date", end)?)
    }

    /// Rejects windows longer than `max`.
    ///
    /// # Errors
    /// A [`ParseError`] on field `end_date` when the window is longer than `max`.
    pub fn limit(self, max: Duration) -> Result<Self, ParseError> {
        if self.duration() > max {
            return Err(ParseError::new(
                "end_date",
                format!(
                    "the window is {} hours long; the maximum is {} hours",
                    self.duration().num_hours(),
                    max.num_hours()
                ),
            ));
        }
        Ok(self)
    }

    /// Inclusive start.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Exclusive end.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// `end - start`.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// The part of this window inside `other`, if they overlap.
    pub fn intersect(&self, other: &TimeRange) -> Option<TimeRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(TimeRange { start, end })
    }
}
