//! The demo city and cameras, created idempotently (running the seed twice changes nothing).

use entity::{camera, city};
use sea_orm::{ConnectionTrait, DbErr};

use crate::repo::cameras::{self, NewCamera};
use crate::repo::cities::{self, NewCity};

/// Name of the demo city.
pub const DEMO_CITY: &str = "Demo City";

/// The demo cameras: name, location, latitude, longitude, MediaMTX path.
pub const DEMO_CAMERAS: [(&str, &str, f64, f64, &str); 3] = [
    (
        "cam-paulista",
        "Av. Paulista x R. Augusta",
        -23.5558,
        -46.6620,
        "demo/cam-paulista",
    ),
    (
        "cam-consolacao",
        "R. da Consolação x Av. Ipiranga",
        -23.5440,
        -46.6440,
        "demo/cam-consolacao",
    ),
    ("cam-se", "Praça da Sé", -23.5503, -46.6339, "demo/cam-se"),
];

/// Ensures the demo city and its cameras exist in the shared database; returns them.
///
/// # Errors
/// The database error.
pub async fn seed_demo(
    db: &impl ConnectionTrait,
) -> Result<(city::Model, Vec<camera::Model>), DbErr> {
    let city = cities::ensure(
        db,
        NewCity {
            name: DEMO_CITY.into(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 30,
            max_storage_bytes: None,
            database_url: None,
        },
    )
    .await?;
    let mut cameras = Vec::with_capacity(DEMO_CAMERAS.len());
    for (name, location, lat, lon, path) in DEMO_CAMERAS {
        cameras.push(
            cameras::ensure(
                db,
                db,
                NewCamera {
                    city_id: city.id,
                    name: name.into(),
                    location: Some(location.into()),
                    latitude: Some(lat),
                    longitude: Some(lon),
                    mediamtx_path: Some(path.into()),
                },
            )
            .await?,
        );
    }
    Ok((city, cameras))
}
