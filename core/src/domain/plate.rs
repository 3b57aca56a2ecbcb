//! Brazilian licence plates: the old `ABC-1234` format and Mercosul `ABC1D23`, search patterns with
//! wildcards, and matching that tolerates the confusions OCR makes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// Plates have seven characters in both Brazilian formats.
const PLATE_LEN: usize = 7;

/// What a position of a plate may hold: `LLL N X NN` where X is a digit (old format) or a letter
/// (Mercosul).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Letter,
    Digit,
    Either,
}

const SLOTS: [Slot; PLATE_LEN] = [
    Slot::Letter,
    Slot::Letter,
    Slot::Letter,
    Slot::Digit,
    Slot::Either,
    Slot::Digit,
    Slot::Digit,
];

impl Slot {
    fn accepts(self, c: char) -> bool {
        match self {
            Slot::Letter => c.is_ascii_uppercase(),
            Slot::Digit => c.is_ascii_digit(),
            Slot::Either => c.is_ascii_uppercase() || c.is_ascii_digit(),
        }
    }
}

/// Removes the separators people and OCR put in plates and upper-cases the rest.
fn compact(input: &str) -> String {
    input
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '.' | '·' | '_' | '\t'))
        .flat_map(char::to_uppercase)
        .collect()
}

fn not_a_plate(input: &str) -> ParseError {
    ParseError::new(
        "plate",
        format!(
            "{input:?} is not a Brazilian plate (expected ABC-1234 or ABC1D23; wildcards * and ? are allowed)"
        ),
    )
}

/// A normalised Brazilian plate: seven characters, no hyphen, upper case (`ABC1234`, `ABC1D23`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Plate(String);

impl Plate {
    /// Parses either format, ignoring case, hyphens and spaces.
    ///
    /// # Errors
    /// A [`ParseError`] on field `plate` naming the input when it is not a Brazilian plate.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let plate = compact(input);
        let valid = plate.chars().count() == PLATE_LEN
            && plate.chars().zip(SLOTS).all(|(c, slot)| slot.accepts(c));
        if valid {
            Ok(Self(plate))
        } else {
            Err(not_a_plate(input))
        }
    }

    /// Whether this is a Mercosul plate (a letter in the fifth position).
    pub fn is_mercosul(&self) -> bool {
        self.0.as_bytes()[4].is_ascii_uppercase()
    }
}

impl AsRef<str> for Plate {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Plate {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Plate {
    type Error = ParseError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Plate> for String {
    fn from(plate: Plate) -> Self {
        plate.0
    }
}

/// A searched plate: a full plate, or one with wildcards (`?` one character, `*` any run, at most
/// one `*`). Stored normalised (`ABC*`, `AB?1D23`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlatePattern {
    text: String,
    /// The pattern expanded to the seven positions; `None` is a wildcard.
    positions: [Option<char>; PLATE_LEN],
}

/// How well a text read by OCR matches a [`PlatePattern`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateMatch {
    /// The seven characters of the OCR text that matched best.
    pub candidate: String,
    /// 1.0 for an exact match; each OCR confusion costs a little, each wrong character a lot.
    pub score: f64,
}

/// Pairs of characters OCR mistakes for each other on plates.
const CONFUSIONS: [(char, char); 8] = [
    ('0', 'O'),
    ('0', 'D'),
    ('1', 'I'),
    ('8', 'B'),
    ('5', 'S'),
    ('2', 'Z'),
    ('6', 'G'),
    ('7', 'T'),
];

fn confusable(a: char, b: char) -> bool {
    CONFUSIONS
        .iter()
        .any(|&(x, y)| (a, b) == (x, y) || (a, b) == (y, x))
}

/// Score of one position: a wildcard or the same character is worth 1, an OCR confusion 0.9
/// (so one confusion still ranks above any wrong character), anything else 0.
const CONFUSION_SCORE: f64 = 0.9;

impl PlatePattern {
    /// The score at or above which a candidate counts as a match: every position right, up to
    /// OCR confusions, or one character wrong.
    pub const DEFAULT_MIN_SCORE: f64 = 0.85;

    /// Parses a plate or a plate with wildcards.
    ///
    /// # Errors
    /// A [`ParseError`] on field `plate` naming the input when it is not a Brazilian plate, when a
    /// fixed character cannot stand at its position, when it has more than one `*`, or when it
    /// fixes fewer than three characters (it would match almost any vehicle).
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let text = compact(input);
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '?' || c == '*')
        {
            return Err(not_a_plate(input));
        }
        let stars = text.matches('*').count();
        let fixed_len = text.chars().count() - stars;
        if stars > 1 || fixed_len > PLATE_LEN || (stars == 0 && fixed_len != PLATE_LEN) {
            return Err(not_a_plate(input));
        }
        let mut positions = [None; PLATE_LEN];
        let mut i = 0;
        for c in text.chars() {
            match c {
                '*' => i += PLATE_LEN - fixed_len,
                '?' => i += 1,
                c => {
                    if !SLOTS[i].accepts(c) {
                        return Err(not_a_plate(input));
                    }
                    positions[i] = Some(c);
                    i += 1;
                }
            }
        }
        if positions.iter().flatten().count() < 3 {
            return Err(ParseError::new(
                "plate",
                format!(
                    "{input:?} fixes fewer than three characters and would match almost any plate"
                ),
            ));
        }
        Ok(Self { text, positions })
    }

    /// Whether the pattern has wildcards.
    pub fn has_wildcards(&self) -> bool {
        self.positions.iter().any(Option::is_none)
    }

    /// Scores one seven-character candidate, position by position.
    fn score_candidate(&self, candidate: &[char]) -> f64 {
        let total: f64 = self
            .positions
            .iter()
            .zip(candidate)
            .map(|(want, &got)| match want {
                None => 1.0,
                Some(w) if *w == got => 1.0,
                Some(w) if confusable(*w, got) => CONFUSION_SCORE,
                Some(_) => 0.0,
            })
            .sum();
        total / PLATE_LEN as f64
    }

    /// The best-scoring seven-character window of the OCR texts, if any reaches `min_score`.
    /// Separators are ignored, so "ABC-1D23" and "BRASIL ABC1D23" both offer `ABC1D23`.
    pub fn best_match<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a str>,
        min_score: f64,
    ) -> Option<PlateMatch> {
        let mut best: Option<PlateMatch> = None;
        for text in texts {
            let chars: Vec<char> = compact(text)
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            for window in chars.windows(PLATE_LEN) {
                let score = self.score_candidate(window);
                if score >= min_score && best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(PlateMatch {
                        candidate: window.iter().collect(),
                        score,
                    });
                }
            }
        }
        best
    }

    /// Ranks candidate plates, best first, keeping those at or above `min_score`.
    pub fn rank<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a str>,
        min_score: f64,
    ) -> Vec<PlateMatch> {
        let mut ranked: Vec<PlateMatch> = candidates
            .into_iter()
            .filter_map(|c| self.best_match([c], min_score))
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked
    }
}

impl AsRef<str> for PlatePattern {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PlatePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PlatePattern {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PlatePattern {
    type Error = ParseError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PlatePattern> for String {
    fn from(pattern: PlatePattern) -> Self {
        pattern.text
    }
}
