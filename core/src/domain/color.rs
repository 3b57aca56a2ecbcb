//! Named vehicle colours, with English and Brazilian Portuguese synonyms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ParseError, fold};

/// A named colour, the vocabulary shared by the search criteria and the detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// vermelho
    Red,
    /// laranja
    Orange,
    /// amarelo
    Yellow,
    /// verde
    Green,
    /// azul
    Blue,
    /// roxo
    Purple,
    /// rosa
    Pink,
    /// marrom
    Brown,
    /// bege
    Beige,
    /// preto
    Black,
    /// branco
    White,
    /// cinza
    Gray,
    /// prata
    Silver,
}

impl Color {
    /// Every colour, in a stable order.
    pub const ALL: [Color; 13] = [
        Color::Red,
        Color::Orange,
        Color::Yellow,
        Color::Green,
        Color::Blue,
        Color::Purple,
        Color::Pink,
        Color::Brown,
        Color::Beige,
        Color::Black,
        Color::White,
        Color::Gray,
        Color::Silver,
    ];

    /// Parses an English or Portuguese colour word (any case, accents optional).
    ///
    /// # Errors
    /// A [`ParseError`] on field `color` naming the word when it is not a known colour.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        Self::from_word(input).ok_or_else(|| {
            ParseError::new(
                "color",
                format!(
                    "{input:?} is not a known colour (try e.g. red/vermelho, black/preto, white/branco, silver/prata, gray/cinza, blue/azul)"
                ),
            )
        })
    }

    /// Maps a colour word from a user or a detector (e.g. Rekognition's simplified colour names)
    /// to a colour; `None` when unknown.
    pub fn from_word(input: &str) -> Option<Self> {
        let color = match fold(input).as_str() {
            "red" | "vermelho" | "vermelha" | "maroon" | "crimson" | "bordo" | "vinho" => Self::Red,
            "orange" | "laranja" => Self::Orange,
            "yellow" | "amarelo" | "amarela" | "gold" | "dourado" | "dourada" => Self::Yellow,
            "green" | "verde" => Self::Green,
            "blue" | "azul" | "navy" | "navy blue" | "teal" | "turquoise" | "turquesa" => {
                Self::Blue
            }
            "purple" | "violet" | "roxo" | "roxa" | "lilas" => Self::Purple,
            "pink" | "rosa" | "magenta" => Self::Pink,
            "brown" | "marrom" => Self::Brown,
            "beige" | "bege" | "tan" | "cream" | "creme" => Self::Beige,
            "black" | "preto" | "preta" => Self::Black,
            "white" | "branco" | "branca" => Self::White,
            "gray" | "grey" | "cinza" | "cinzento" | "cinzenta" | "chumbo" | "grafite" => {
                Self::Gray
            }
            "silver" | "prata" | "prateado" | "prateada" => Self::Silver,
            _ => return None,
        };
        Some(color)
    }

    /// Canonical English name, as stored and returned by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Red => "red",
            Self::Orange => "orange",
            Self::Yellow => "yellow",
            Self::Green => "green",
            Self::Blue => "blue",
            Self::Purple => "purple",
            Self::Pink => "pink",
            Self::Brown => "brown",
            Self::Beige => "beige",
            Self::Black => "black",
            Self::White => "white",
            Self::Gray => "gray",
            Self::Silver => "silver",
        }
    }

    /// Black, white, gray and silver: the colours every vehicle also shows in its windows, tyres
    /// and shadows.
    pub fn is_achromatic(self) -> bool {
        matches!(self, Self::Black | Self::White | Self::Gray | Self::Silver)
    }

    /// Whether a detected colour satisfies a searched one. Silver and gray are the same paint to
    /// a camera (and to Rekognition's simplified palette), so each accepts the other.
    pub fn matches(self, detected: Color) -> bool {
        self == detected
            || matches!(
                (self, detected),
                (Self::Silver, Self::Gray) | (Self::Gray, Self::Silver)
            )
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Color {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Color {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
