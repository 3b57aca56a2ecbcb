//! API keys (admin): create (the secret is shown once), list, read, rename, expire, revoke.

use chrono::{DateTime, Utc};
use entity::api_key;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Tags};
use sentinela_core::repo::{api_keys, cities};

use super::{Created, Deleted};
use crate::AppState;
use crate::auth::{self, ApiKeyAuth};
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// API keys (admin): `Authorization: Bearer <secret>`. A key is scoped to one city or is an
    /// admin key; it may expire; revoking it keeps its row for the record.
    ApiKeys,
}

/// A new API key.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct CreateApiKey {
    /// A label.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// The user it acts for.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub user_id: String,
    /// The city it is scoped to; omit for an admin key.
    #[oai(validator(minimum(value = "1")))]
    pub city_id: Option<i64>,
    /// When it stops working (RFC 3339, in the future); omit for a key that does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}

impl poem_openapi::types::Example for CreateApiKey {
    fn example() -> Self {
        Self {
            name: "central de operações".into(),
            user_id: "maria.silva".into(),
            city_id: Some(1),
            expires_at: None,
        }
    }
}

/// Changes to an API key: absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct UpdateApiKey {
    /// A new label.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// A new expiry (RFC 3339, in the future), or `null` for none.
    pub expires_at: MaybeUndefined<DateTime<Utc>>,
}

impl poem_openapi::types::Example for UpdateApiKey {
    fn example() -> Self {
        Self {
            name: Some("central de operações (turno da noite)".into()),
            expires_at: MaybeUndefined::Value(
                DateTime::parse_from_rfc3339("2027-06-30T23:59:59-03:00")
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default(),
            ),
        }
    }
}

/// An API key (never its secret).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct ApiKeyView {
    /// Id.
    pub id: i64,
    /// First characters of the secret.
    pub prefix: String,
    /// Label.
    pub name: String,
    /// User.
    pub user_id: String,
    /// City scope; absent for admin keys.
    pub city_id: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// The last request it authenticated (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
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
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

impl poem_openapi::types::Example for ApiKeyView {
    fn example() -> Self {
        let created = DateTime::parse_from_rfc3339("2026-11-30T14:00:00-03:00")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        Self {
            id: 12,
            prefix: "snt_3f9a0c1b".into(),
            name: "central de operações".into(),
            user_id: "maria.silva".into(),
            city_id: Some(1),
            created_at: created,
            expires_at: None,
            last_used_at: Some(created + chrono::Duration::hours(3)),
            revoked_at: None,
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

/// A page of API keys.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyPage {
    /// Keys by id.
    pub items: Vec<ApiKeyView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn future_expiry(at: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if at <= Utc::now() {
        return Err(ApiError::invalid(
            "expires_at must be in the future",
            "expires_at",
        ));
    }
    Ok(at)
}

/// API key endpoints.
pub struct ApiKeysApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::ApiKeys")]
impl ApiKeysApi {
    /// Create an API key (admin). The secret is in the answer, once.
    #[oai(path = "/api-keys", method = "post", operation_id = "create_api_key")]
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
        let expires_at = body.expires_at.map(future_expiry).transpose()?;
        let secret = auth::new_secret();
        let key = auth::create_key(
            state.control(),
            &secret,
            &body.name,
            &body.user_id,
            body.city_id,
        )
        .await?;
        let key = match expires_at {
            Some(at) => api_keys::update(
                state.control(),
                key.id,
                api_keys::KeyChanges {
                    name: None,
                    expires_at: Some(Some(at)),
                },
            )
            .await?
            .unwrap_or(key),
            None => key,
        };
        let location = format!("/api/v1/api-keys/{}", key.id);
        Ok(Created::Created(
            Json(CreatedApiKey {
                key: key.into(),
                secret,
            }),
            location,
        ))
    }

    /// API keys (admin), by id, a page at a time.
    #[oai(path = "/api-keys", method = "get", operation_id = "list_api_keys")]
    async fn list_keys(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// Only keys scoped to this city.
        #[oai(validator(minimum(value = "1")))]
        city_id: Query<Option<i64>>,
        /// Page size (1–1000, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i64>>,
        /// The previous page's `next_cursor`.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<ApiKeyPage>, ApiError> {
        auth.0.require_admin()?;
        let limit = super::page_size(limit.0);
        let after = super::id_cursor(cursor.0.as_deref())?;
        let rows = api_keys::page(state.control(), city_id.0, after, limit).await?;
        let (items, next_cursor) = super::paged(rows, limit, |k| k.id.to_string());
        Ok(Json(ApiKeyPage { items, next_cursor }))
    }

    /// One API key (admin).
    #[oai(path = "/api-keys/:id", method = "get", operation_id = "get_api_key")]
    async fn get_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        auth.0.require_admin()?;
        let key = api_keys::get(state.control(), id.0).await?;
        key.map(|k| Json(k.into()))
            .ok_or_else(|| ApiError::not_found("API key", id.0))
    }

    /// Rename an API key or set its expiry (admin).
    #[oai(
        path = "/api-keys/:id",
        method = "patch",
        operation_id = "update_api_key"
    )]
    async fn update_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        body: Json<UpdateApiKey>,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        let expires_at = match super::change(body.expires_at) {
            Some(Some(at)) => Some(Some(future_expiry(at)?)),
            other => other,
        };
        let changes = api_keys::KeyChanges {
            name: body.name.map(|n| n.trim().to_owned()),
            expires_at,
        };
        let key = api_keys::update(state.control(), id.0, changes).await?;
        state.forget_key(id.0);
        key.map(|k| Json(k.into()))
            .ok_or_else(|| ApiError::not_found("API key", id.0))
    }

    /// Revoke an API key (admin); it answers 401 from then on. Its row stays for the record.
    #[oai(
        path = "/api-keys/:id",
        method = "delete",
        operation_id = "delete_api_key"
    )]
    async fn delete_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Deleted, ApiError> {
        auth.0.require_admin()?;
        let key = api_keys::revoke(state.control(), id.0).await?;
        state.forget_key(id.0);
        key.map(|_| Deleted::Deleted)
            .ok_or_else(|| ApiError::not_found("API key", id.0))
    }

    /// Revoke an API key (admin), answering with the revoked key; the same as `DELETE`.
    #[oai(
        path = "/api-keys/:id/revoke",
        method = "post",
        operation_id = "revoke_api_key"
    )]
    async fn revoke_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        auth.0.require_admin()?;
        let key = api_keys::revoke(state.control(), id.0).await?;
        state.forget_key(id.0);
        key.map(|k| Json(k.into()))
            .ok_or_else(|| ApiError::not_found("API key", id.0))
    }
}
