//! A search's sightings read as a path: visits in time order, a new visit whenever the vehicle
//! leaves a camera (another camera sees it, or none does for longer than the gap) and comes back.

use chrono::{DateTime, Duration, Utc};
use entity::trajectory_point;

/// One stay of the vehicle in front of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    /// The camera.
    pub camera_id: i64,
    /// First sighting of the stay.
    pub first_seen: DateTime<Utc>,
    /// Last sighting of the stay.
    pub last_seen: DateTime<Utc>,
    /// Sightings in the stay.
    pub sightings: u64,
    /// The most confident sighting of the stay (its id, confidence, snapshot file).
    pub best_point_id: i64,
    /// Its confidence.
    pub best_confidence: f64,
    /// Its snapshot file (under `SNAPSHOT_DIR`), when one was kept.
    pub best_image: Option<String>,
    /// The plate text read with the best plate score in the stay.
    pub plate: Option<String>,
    /// The colour of the most confident sighting.
    pub color: Option<String>,
}

/// The visits of `points` (in time order): consecutive sightings of one camera less than `gap`
/// apart form one visit; a sighting of another camera, or a gap longer than `gap`, starts a new
/// one — so A, B, C and A again is four visits.
pub fn visits(points: &[trajectory_point::Model], gap: Duration) -> Vec<Visit> {
    let mut out: Vec<Visit> = Vec::new();
    let mut plate_score: Vec<f64> = Vec::new();
    for p in points {
        let continues = out
            .last()
            .is_some_and(|v| v.camera_id == p.camera_id && p.timestamp - v.last_seen <= gap);
        if !continues {
            out.push(Visit {
                camera_id: p.camera_id,
                first_seen: p.timestamp,
                last_seen: p.timestamp,
                sightings: 0,
                best_point_id: p.id,
                best_confidence: f64::MIN,
                best_image: None,
                plate: None,
                color: None,
            });
            plate_score.push(f64::MIN);
        }
        let (Some(v), Some(best_plate)) = (out.last_mut(), plate_score.last_mut()) else {
            continue;
        };
        v.last_seen = v.last_seen.max(p.timestamp);
        v.sightings += 1;
        if p.confidence > v.best_confidence {
            v.best_confidence = p.confidence;
            v.best_point_id = p.id;
            v.best_image.clone_from(&p.image_path);
            v.color.clone_from(&p.color);
        }
        if let (Some(text), Some(score)) = (&p.plate_text, p.plate_score)
            && score > *best_plate
        {
            *best_plate = score;
            v.plate = Some(text.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: i64, camera: i64, second: i64, confidence: f64) -> trajectory_point::Model {
        let t0 = DateTime::parse_from_rfc3339("2026-11-29T11:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        trajectory_point::Model {
            id,
            search_id: 1,
            camera_id: camera,
            recording_id: 1,
            timestamp: t0 + Duration::seconds(second),
            confidence,
            label: "bus".into(),
            color: Some("red".into()),
            plate_text: (id == 3).then(|| "ABC1D23".to_owned()),
            plate_score: (id == 3).then_some(0.9),
            bbox: serde_json::json!({"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}),
            image_path: Some(format!("1/{id}.jpg")),
            created_at: t0,
        }
    }

    #[test]
    fn a_return_to_the_first_camera_is_a_new_visit() {
        let points = [
            point(1, 10, 0, 0.5),
            point(2, 10, 1, 0.9),
            point(3, 20, 60, 0.7),
            point(4, 30, 120, 0.6),
            point(5, 10, 200, 0.8),
            point(6, 10, 201, 0.4),
        ];
        let v = visits(&points, Duration::seconds(30));
        let cameras: Vec<i64> = v.iter().map(|v| v.camera_id).collect();
        assert_eq!(cameras, [10, 20, 30, 10]);
        assert_eq!((v[0].sightings, v[0].best_point_id), (2, 2));
        assert_eq!(v[0].best_image.as_deref(), Some("1/2.jpg"));
        assert_eq!(v[1].plate.as_deref(), Some("ABC1D23"));
        assert_eq!((v[3].first_seen - v[0].first_seen).num_seconds(), 200);
        assert_eq!((v[3].last_seen - v[3].first_seen).num_seconds(), 1);
    }

    #[test]
    fn a_gap_longer_than_the_limit_splits_a_camera_s_sightings() {
        let points = [point(1, 10, 0, 0.5), point(2, 10, 100, 0.5)];
        assert_eq!(visits(&points, Duration::seconds(30)).len(), 2);
        assert_eq!(visits(&points, Duration::seconds(120)).len(), 1);
        assert!(visits(&[], Duration::seconds(30)).is_empty());
    }
}
