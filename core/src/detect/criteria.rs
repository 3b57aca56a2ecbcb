//! Matching an analysis against a search's criteria.

use entity::vehicle_search;

use super::{Analysis, VehicleDetection};
use crate::domain::{Color, ParseError, PlateMatch, PlatePattern, VehicleType};

/// What a search looks for; every given criterion must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// Plate pattern.
    pub plate: Option<PlatePattern>,
    /// Colour.
    pub color: Option<Color>,
    /// Vehicle type.
    pub vehicle_type: Option<VehicleType>,
    /// Minimum plate score (see [`PlatePattern::DEFAULT_MIN_SCORE`]).
    pub min_plate_score: f64,
}

/// A vehicle that satisfies the criteria.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    /// The vehicle.
    pub vehicle: &'a VehicleDetection,
    /// Its colour.
    pub color: Option<Color>,
    /// The plate read, when the search has one.
    pub plate: Option<PlateMatch>,
    /// Ranking score: detection confidence times plate score.
    pub score: f64,
}

impl Criteria {
    /// Criteria from parsed values.
    pub fn new(
        plate: Option<PlatePattern>,
        color: Option<Color>,
        vehicle_type: Option<VehicleType>,
    ) -> Self {
        Self {
            plate,
            color,
            vehicle_type,
            min_plate_score: PlatePattern::DEFAULT_MIN_SCORE,
        }
    }

    /// The criteria stored on a search.
    ///
    /// # Errors
    /// When a stored value no longer parses (a corrupted row).
    pub fn from_search(search: &vehicle_search::Model) -> Result<Self, ParseError> {
        Ok(Self::new(
            search
                .plate
                .as_deref()
                .map(PlatePattern::parse)
                .transpose()?,
            search.color.as_deref().map(Color::parse).transpose()?,
            search
                .vehicle_type
                .as_deref()
                .map(VehicleType::parse)
                .transpose()?,
        ))
    }

    /// Whether text must be read (the search has a plate).
    pub fn wants_text(&self) -> bool {
        self.plate.is_some()
    }

    /// Whether one vehicle satisfies every criterion.
    pub fn matches<'a>(&self, vehicle: &'a VehicleDetection) -> Option<Match<'a>> {
        if self.vehicle_type.is_some_and(|t| t != vehicle.kind) {
            return None;
        }
        let color = vehicle.main_color();
        if let Some(wanted) = self.color
            && !color.is_some_and(|c| wanted.matches(c))
        {
            return None;
        }
        let plate = match &self.plate {
            Some(pattern) => Some(pattern.best_match(
                vehicle.texts.iter().map(String::as_str),
                self.min_plate_score,
            )?),
            None => None,
        };
        let score = vehicle.confidence * plate.as_ref().map_or(1.0, |p| p.score);
        Some(Match {
            vehicle,
            color,
            plate,
            score,
        })
    }

    /// The best-scoring matching vehicle of a frame.
    pub fn best_match<'a>(&self, analysis: &'a Analysis) -> Option<Match<'a>> {
        analysis
            .vehicles
            .iter()
            .filter_map(|v| self.matches(v))
            .max_by(|a, b| a.score.total_cmp(&b.score))
    }
}
