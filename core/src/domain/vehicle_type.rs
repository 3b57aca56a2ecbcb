//! Vehicle types, with English and Brazilian Portuguese synonyms and detector label names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ParseError, fold};

/// The vehicle classes Sentinela searches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleType {
    /// carro
    Car,
    /// moto
    Motorcycle,
    /// ônibus
    Bus,
    /// caminhão
    Truck,
    /// van
    Van,
}

impl VehicleType {
    /// Parses an English or Portuguese vehicle word (any case, accents optional).
    ///
    /// # Errors
    /// A [`ParseError`] on field `vehicle_type` naming the word when it is not a known type.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        Self::from_word(input).ok_or_else(|| {
            ParseError::new(
                "vehicle_type",
                format!(
                    "{input:?} is not a known vehicle type (try car/carro, motorcycle/moto, bus/ônibus, truck/caminhão, van)"
                ),
            )
        })
    }

    /// Maps a vehicle word from a user or a detector label (COCO or Rekognition names such as
    /// "Automobile", "Pickup Truck", "Minibus") to a type; `None` for anything else.
    pub fn from_word(input: &str) -> Option<Self> {
        let kind = match fold(input).as_str() {
            "car" | "cars" | "automobile" | "sedan" | "suv" | "hatchback" | "taxi" | "coupe"
            | "sports car" | "carro" | "carros" | "automovel" | "auto" | "taxi cab" => Self::Car,
            "motorcycle" | "motorbike" | "moped" | "scooter" | "moto" | "motos" | "motocicleta"
            | "motoneta" | "lambreta" => Self::Motorcycle,
            "bus" | "buses" | "minibus" | "school bus" | "double decker bus" | "onibus"
            | "micro onibus" | "microonibus" => Self::Bus,
            "truck" | "lorry" | "pickup truck" | "pickup" | "trailer truck" | "tow truck"
            | "fire truck" | "caminhao" | "caminhoes" | "caminhonete" | "carreta" => Self::Truck,
            "van" | "minivan" | "caravan" | "kombi" | "furgao" | "perua" | "ambulance"
            | "ambulancia" => Self::Van,
            _ => return None,
        };
        Some(kind)
    }

    /// Canonical English name, as stored and returned by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Car => "car",
            Self::Motorcycle => "motorcycle",
            Self::Bus => "bus",
            Self::Truck => "truck",
            Self::Van => "van",
        }
    }
}

impl fmt::Display for VehicleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VehicleType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for VehicleType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
