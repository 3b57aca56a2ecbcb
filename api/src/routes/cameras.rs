//! Cameras: an admin key creates them; a city key lists its city's.

use entity::camera;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use sea_orm::DatabaseConnection;
use sentinela_core::files::normalize;
use sentinela_core::repo::{cameras, cities, directory};

use super::Created;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Cameras.
    Cameras,
}

/// A camera.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CameraView {
    /// Id.
    pub id: i64,
    /// City.
    pub city_id: i64,
    /// Name.
    pub name: String,
    /// Where it points.
    pub location: Option<String>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// MediaMTX path.
    pub mediamtx_path: Option<String>,
    /// Enabled.
    pub enabled: bool,
}

impl From<camera::Model> for CameraView {
    fn from(c: camera::Model) -> Self {
        Self {
            id: c.id,
            city_id: c.city_id,
            name: c.name,
            location: c.location,
            latitude: c.latitude,
            longitude: c.longitude,
            mediamtx_path: c.mediamtx_path,
            enabled: c.enabled,
        }
    }
}

/// A new camera.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateCamera {
    /// City.
    pub city_id: i64,
    /// Name, unique in the city.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Where it points.
    #[oai(validator(max_length = 500))]
    pub location: Option<String>,
    /// Latitude.
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    pub latitude: Option<f64>,
    /// Longitude.
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    pub longitude: Option<f64>,
    /// MediaMTX path (its recordings folder), unique.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub mediamtx_path: Option<String>,
}

/// The camera `id` if the key sees its city, with the database holding that city's data.
/// Another city's camera answers 404, like a missing one.
pub(crate) async fn visible_camera(
    state: &AppState,
    auth: &ApiKeyAuth,
    id: i64,
) -> Result<(camera::Model, DatabaseConnection), ApiError> {
    let not_found = || ApiError::not_found("camera", id);
    let city = directory::city_of_camera(state.control(), id)
        .await?
        .filter(|city| auth.0.sees_city(*city))
        .ok_or_else(not_found)?;
    let db = state.city_db(city).await?;
    match cameras::get(&db, id).await? {
        Some(c) if c.city_id == city => Ok((c, db)),
        _ => Err(not_found()),
    }
}

/// The databases holding the data of the cities a list covers: one city's (`city`, or a city
/// key's own), or for an admin key without `city` every database.
pub(crate) async fn listed_databases(
    state: &AppState,
    auth: &ApiKeyAuth,
    city: Option<i64>,
) -> Result<Vec<DatabaseConnection>, ApiError> {
    match (auth.0.city_scope(), city) {
        (Some(own), Some(asked)) if own != asked => Ok(Vec::new()),
        (Some(one), _) | (None, Some(one)) => match state.city_db(one).await {
            Ok(db) => Ok(vec![db]),
            Err(ApiError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        },
        (None, None) => Ok(state.dbs.all().await?.into_iter().map(|d| d.conn).collect()),
    }
}

/// A camera's `mediamtx_path`, normalised like a recording path (no `..`, no leading `/`).
fn camera_folder(input: Option<String>) -> Result<Option<String>, ApiError> {
    input
        .map(|p| {
            normalize(&p)
                .map_err(|e| ApiError::invalid(format!("mediamtx_path: {e}"), "mediamtx_path"))
        })
        .transpose()
}

/// Camera endpoints.
pub struct CamerasApi;

#[OpenApi(prefix_path = "/api/v1")]
impl CamerasApi {
    /// Cameras the key sees, optionally of one city.
    #[oai(path = "/cameras", method = "get", tag = "Tag::Cameras")]
    async fn list_cameras(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] city_id: Query<Option<i64>>,
    ) -> Result<Json<Vec<CameraView>>, ApiError> {
        let mut rows = Vec::new();
        for db in listed_databases(&state, &auth, city_id.0).await? {
            rows.extend(cameras::list_visible(&db, auth.0.city_scope(), city_id.0).await?);
        }
        rows.sort_by_key(|c| c.id);
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Create a camera (admin).
    #[oai(path = "/cameras", method = "post", tag = "Tag::Cameras")]
    async fn create_camera(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateCamera>,
    ) -> Result<Created<CameraView>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        if cities::get(state.control(), body.city_id).await?.is_none() {
            return Err(ApiError::invalid(
                format!("unknown city {}", body.city_id),
                "city_id",
            ));
        }
        let db = state.city_db(body.city_id).await?;
        let created = cameras::create(
            state.control(),
            &db,
            cameras::NewCamera {
                city_id: body.city_id,
                name: body.name.trim().to_owned(),
                location: body.location,
                latitude: body.latitude,
                longitude: body.longitude,
                mediamtx_path: camera_folder(body.mediamtx_path)?,
            },
        )
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::conflict(
                "a camera with this name (in the city) or MediaMTX path already exists",
                Some("name"),
            ),
            other => other,
        })?;
        Ok(Created::Created(Json(created.into())))
    }
}
