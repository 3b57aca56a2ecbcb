//! API keys (admin): create (the secret is shown once), list, revoke.

use chrono::{DateTime, Utc};
use entity::api_key;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use sentinela_core::repo::{api_keys, cities};

use super::Created;
use crate::AppState;
use crate::auth::{self, ApiKeyAuth};
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// API keys (admin).
    ApiKeys,
}

/// A new API key.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateApiKey {
    /// A label.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// The user it acts for.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub user_id: String,
    /// The city it is scoped to; omit for an admin key.
    pub city_id: Option<i64>,
}

/// An API key (never its secret).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyView {
    /// Id.
    pub id: i64,
    /// First characters of the secret.
    pub prefix: String,
    /// Label.
    pub name: String,
    /// User.
    pub user_id: String,
    /// City scope; `null` for admin.
    pub city_id: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyView {
    fn from(k: api_key::Model) -> Self {
        Self {
            id: k.id,
            prefix: k.prefix,
            name: k.name,
            user_id: k.user_id,
            city_id: k.city_id,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A created key: the secret is shown this once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedApiKey {
    /// The key.
    pub key: ApiKeyView,
    /// The secret for `Authorization: Bearer`; it is stored hashed and cannot be shown again.
    pub secret: String,
}

/// API key endpoints.
pub struct ApiKeysApi;

#[OpenApi(prefix_path = "/api/v1")]
impl ApiKeysApi {
    /// Create an API key (admin). The secret is in the answer, once.
    #[oai(path = "/api-keys", method = "post", tag = "Tag::ApiKeys")]
    async fn create_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateApiKey>,
    ) -> Result<Created<CreatedApiKey>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        if let Some(city) = body.city_id
            && cities::get(state.control(), city).await?.is_none()
        {
            return Err(ApiError::invalid(format!("unknown city {city}"), "city_id"));
        }
        let secret = auth::new_secret();
        let key = auth::create_key(
            state.control(),
            &secret,
            &body.name,
            &body.user_id,
            body.city_id,
        )
        .await?;
        Ok(Created::Created(Json(CreatedApiKey {
            key: key.into(),
            secret,
        })))
    }

    /// API keys (admin).
    #[oai(path = "/api-keys", method = "get", tag = "Tag::ApiKeys")]
    async fn list_keys(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
    ) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
        auth.0.require_admin()?;
        let rows = api_keys::list(state.control()).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Revoke an API key (admin); it answers 401 from then on.
    #[oai(path = "/api-keys/:id/revoke", method = "post", tag = "Tag::ApiKeys")]
    async fn revoke_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        auth.0.require_admin()?;
        match api_keys::revoke(state.control(), id.0).await? {
            Some(key) => Ok(Json(key.into())),
            None => Err(ApiError::not_found("API key", id.0)),
        }
    }
}
