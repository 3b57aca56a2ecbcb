//! One module per resource, each with its own `#[OpenApi]` impl; [`api`] composes them.

pub mod api_keys;
pub mod cameras;
pub mod cities;
pub mod evidence;
pub mod health;
pub mod recordings;
pub mod searches;

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

/// Created.
#[derive(ApiResponse)]
pub enum Created<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}

/// Every API resource, for `OpenApiService::new`.
pub fn api() -> (
    searches::SearchesApi,
    evidence::EvidenceApi,
    cities::CitiesApi,
    cameras::CamerasApi,
    recordings::RecordingsApi,
    api_keys::ApiKeysApi,
    health::HealthApi,
) {
    (
        searches::SearchesApi,
        evidence::EvidenceApi,
        cities::CitiesApi,
        cameras::CamerasApi,
        recordings::RecordingsApi,
        api_keys::ApiKeysApi,
        health::HealthApi,
    )
}
