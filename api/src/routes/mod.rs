//! One module per resource, each with its own `#[OpenApi]` impl; [`api`] composes them.

pub mod admin;
pub mod health;
pub mod searches;

/// Every API resource, for `OpenApiService::new`.
pub fn api() -> (searches::SearchesApi, admin::AdminApi, health::HealthApi) {
    (searches::SearchesApi, admin::AdminApi, health::HealthApi)
}
