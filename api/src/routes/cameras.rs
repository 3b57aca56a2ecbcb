//! Cameras: an admin key creates them; a city key lists its city's.

use entity::camera;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Tags};
use sea_orm::DatabaseConnection;
use sentinela_core::files::normalize;
use sentinela_core::repo::{cameras, cities, directory};

use super::{Created, Deleted, change};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Cameras (admin writes, a city key reads its city's). A disabled camera keeps its
    /// recordings but new searches and index sync skip it.
    Cameras,
}

/// A camera.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
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

impl poem_openapi::types::Example for CameraView {
    fn example() -> Self {
        Self {
            id: 7,
            city_id: 1,
            name: "Av. Paulista x R. Augusta".into(),
            location: Some("sentido centro".into()),
            latitude: Some(-23.5614),
            longitude: Some(-46.6559),
            mediamtx_path: Some("cam_paulista_augusta".into()),
            enabled: true,
        }
    }
}

/// A new camera.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct CreateCamera {
    /// City.
    #[oai(validator(minimum(value = "1")))]
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

impl poem_openapi::types::Example for CreateCamera {
    fn example() -> Self {
        Self {
            city_id: 1,
            name: "Av. Paulista x R. Augusta".into(),
            location: Some("sentido centro".into()),
            latitude: Some(-23.5614),
            longitude: Some(-46.6559),
            mediamtx_path: Some("cam_paulista_augusta".into()),
        }
    }
}

/// Changes to a camera: absent fields stay as they are, `null` clears an optional one.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct UpdateCamera {
    /// A new name, unique in the city.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// Where it points.
    #[oai(validator(max_length = 500))]
    pub location: MaybeUndefined<String>,
    /// Latitude.
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    pub latitude: MaybeUndefined<f64>,
    /// Longitude.
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    pub longitude: MaybeUndefined<f64>,
    /// MediaMTX path (its recordings folder), unique; recordings already registered keep their
    /// paths.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub mediamtx_path: MaybeUndefined<String>,
    /// `false`: new searches and index sync skip the camera (its recordings stay).
    pub enabled: Option<bool>,
}

impl poem_openapi::types::Example for UpdateCamera {
    fn example() -> Self {
        Self {
            name: None,
            location: MaybeUndefined::Undefined,
            latitude: MaybeUndefined::Undefined,
            longitude: MaybeUndefined::Undefined,
            mediamtx_path: MaybeUndefined::Undefined,
            enabled: Some(false),
        }
    }
}

/// A page of cameras.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CameraPage {
    /// Cameras by id.
    pub items: Vec<CameraView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn duplicate_camera(e: sea_orm::DbErr) -> ApiError {
    match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::conflict(
            "a camera with this name (in the city) or MediaMTX path already exists",
            Some("name"),
        ),
        other => other,
    }
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

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Cameras")]
impl CamerasApi {
    /// Cameras the key sees, optionally of one city, by id, a page at a time.
    #[oai(path = "/cameras", method = "get", operation_id = "list_cameras")]
    async fn list_cameras(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// Only this city's cameras.
        #[oai(validator(minimum(value = "1")))]
        city_id: Query<Option<i64>>,
        /// Page size (1–1000, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i64>>,
        /// The previous page's `next_cursor`.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<CameraPage>, ApiError> {
        let limit = super::page_size(limit.0);
        let after = super::id_cursor(cursor.0.as_deref())?;
        let mut rows = Vec::new();
        for db in listed_databases(&state, &auth, city_id.0).await? {
            rows.extend(cameras::page(&db, auth.0.city_scope(), city_id.0, after, limit).await?);
        }
        rows.sort_by_key(|c| c.id);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let (items, next_cursor) = super::paged(rows, limit, |c| c.id.to_string());
        Ok(Json(CameraPage { items, next_cursor }))
    }

    /// One camera.
    #[oai(path = "/cameras/:id", method = "get", operation_id = "get_camera")]
    async fn get_camera(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<CameraView>, ApiError> {
        Ok(Json(visible_camera(&state, &auth, id.0).await?.0.into()))
    }

    /// Change a camera (admin): name, place, coordinates, folder, enabled.
    #[oai(
        path = "/cameras/:id",
        method = "patch",
        operation_id = "update_camera"
    )]
    async fn update_camera(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        body: Json<UpdateCamera>,
    ) -> Result<Json<CameraView>, ApiError> {
        auth.0.require_admin()?;
        let (camera, db) = visible_camera(&state, &auth, id.0).await?;
        let body = body.0;
        let mediamtx_path = match change(body.mediamtx_path) {
            Some(path) => Some(camera_folder(path)?),
            None => None,
        };
        let changes = cameras::CameraChanges {
            name: body.name.map(|n| n.trim().to_owned()),
            location: change(body.location),
            latitude: change(body.latitude),
            longitude: change(body.longitude),
            mediamtx_path,
            enabled: body.enabled,
        };
        let updated = cameras::update(state.control(), &db, camera, changes)
            .await
            .map_err(duplicate_camera)?;
        Ok(Json(updated.into()))
    }

    /// Delete a camera (admin). Refused (409) while it has recordings: delete them first, or
    /// disable the camera instead (`PATCH` with `enabled: false`).
    #[oai(
        path = "/cameras/:id",
        method = "delete",
        operation_id = "delete_camera"
    )]
    async fn delete_camera(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Deleted, ApiError> {
        auth.0.require_admin()?;
        let (camera, db) = visible_camera(&state, &auth, id.0).await?;
        let held = cameras::recording_count(&db, camera.id).await?;
        if held > 0 {
            return Err(ApiError::conflict(
                format!(
                    "camera {} has {held} recordings; delete them first, or disable the camera",
                    camera.id
                ),
                None,
            ));
        }
        cameras::delete(state.control(), &db, camera.id).await?;
        Ok(Deleted::Deleted)
    }

    /// Create a camera (admin).
    #[oai(path = "/cameras", method = "post", operation_id = "create_camera")]
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
        .map_err(duplicate_camera)?;
        let location = format!("/api/v1/cameras/{}", created.id);
        Ok(Created::Created(Json(created.into()), location))
    }
}
