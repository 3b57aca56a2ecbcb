//! Domain types that parse once at the boundary: after `parse`, a value is known to be valid.
//!
//! Users of the API speak Brazilian Portuguese, so colours and vehicle types accept Portuguese words
//! (with or without accents) besides English ones; plates follow Brazil's two formats.

mod color;
mod plate;
mod time_range;
mod vehicle_type;

pub use color::Color;
pub use plate::{Plate, PlateMatch, PlatePattern};
pub use time_range::TimeRange;
pub use vehicle_type::VehicleType;

/// A value that does not parse, with the field it came from, so the message can name both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct ParseError {
    /// The input field, e.g. `plate`.
    pub field: &'static str,
    /// What was wrong, starting with the offending value, e.g. `"??" is not a Brazilian plate`.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Lower-cases and strips Portuguese diacritics and surrounding blanks, so "Ônibus " = "onibus".
pub(crate) fn fold(word: &str) -> String {
    word.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            '_' | '-' => ' ',
            other => other,
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
