//! API keys: `Authorization: Bearer <key>`. Keys are stored as SHA-256 hashes; a key is scoped to
//! one city or is admin. Objects of another city answer 404, so ids do not leak.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use rand::RngCore;
use sea_orm::{ConnectionTrait, DbErr};

use crate::AppState;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id.
    pub key_id: i64,
    /// The key's user.
    pub user_id: String,
    /// The city a city key is scoped to (`None` for admin keys).
    pub city_id: Option<i64>,
    /// Whether the key is admin: the key's explicit `is_admin` column, never inferred from a
    /// missing city.
    pub admin: bool,
}

impl Principal {
    /// Whether the key is admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the key may see objects of `city_id`: admin keys see every city, a city key its
    /// own; a non-admin key without a city sees none.
    pub fn sees_city(&self, city_id: i64) -> bool {
        self.admin || self.city_id == Some(city_id)
    }

    /// The city a list must be restricted to: `None` for admin keys (every city), the key's city
    /// otherwise (`Some(-1)`, matching nothing, for a non-admin key without one).
    pub fn city_scope(&self) -> Option<i64> {
        if self.admin {
            None
        } else {
            Some(self.city_id.unwrap_or(-1))
        }
    }

    /// Fails with 403 unless admin.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] for a city key.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an admin API key"))
        }
    }
}

/// Bearer API key.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", key_name = "Authorization", checker = "check_key")]
pub struct ApiKeyAuth(pub Principal);

async fn check_key(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR))?;
    let now = chrono::Utc::now();
    // A web console session reads through the API (images, clips, exports, progress) with its
    // cookie, which [`session_reads`] turns into this bearer; it never writes through it.
    if let Some(token) = bearer.token.strip_prefix(SESSION_BEARER) {
        if !matches!(
            *req.method(),
            poem::http::Method::GET | poem::http::Method::HEAD
        ) {
            return Err(ApiError::unauthorized(
                "a console session only reads through the API; use an API key",
            )
            .into());
        }
        let session = sentinela_core::repo::sessions::find(state.control(), token, now)
            .await
            .map_err(|e| poem::Error::from(ApiError::from(e)))?
            .ok_or_else(|| {
                ApiError::unauthorized("the console session has ended; sign in again")
            })?;
        let key = sentinela_core::repo::api_keys::get(state.control(), session.api_key_id)
            .await
            .map_err(|e| poem::Error::from(ApiError::from(e)))?;
        return principal_of(state, key, now).await.map_err(Into::into);
    }
    let hash = hash_key(&bearer.token);
    let found = match state.keys.get(&hash) {
        Some(key) => Some(key),
        None => {
            let found = find_key(state.control(), &bearer.token)
                .await
                .map_err(|e| poem::Error::from(ApiError::internal(e)))?;
            if let Some(key) = &found {
                state.keys.put(hash, key.clone());
            }
            found
        }
    };
    principal_of(state, found, now).await.map_err(Into::into)
}

/// The bearer a console session's cookie stands for on the API's read operations.
pub const SESSION_BEARER: &str = "session:";

/// The name of the console's session cookie.
pub const SESSION_COOKIE: &str = "sentinela_session";

/// Middleware: a read (`GET`, `HEAD`) of the API without `Authorization` but with the console's
/// session cookie is authenticated as that session (so the console's images, clips, exports and
/// progress stream need no key in any URL). Writes always need an API key; the console's own
/// forms carry a CSRF token instead.
pub async fn session_reads<E: poem::Endpoint>(
    endpoint: std::sync::Arc<E>,
    mut request: Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    use poem::http::{HeaderValue, Method, header};
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads
        && request.uri().path().starts_with("/api/")
        && !request.headers().contains_key(header::AUTHORIZATION)
        && let Some(token) = cookie(&request, SESSION_COOKIE)
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {SESSION_BEARER}{token}"))
    {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(endpoint.call(request).await?.into_response())
}

/// A cookie's value.
pub fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 200)
}

/// The principal of a stored key, if it may be used now (quota counted, last use recorded).
pub async fn principal_of(
    state: &AppState,
    key: Option<sentinela_core::entity::api_key::Model>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, ApiError> {
    let key = key.ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    if let Some(refusal) = sentinela_core::repo::api_keys::refusal(&key, now) {
        return Err(ApiError::unauthorized(refusal));
    }
    if let Err(over) = state.quota.hit(key.id).await {
        return Err(ApiError::over_request_quota(over.limit, over.reset_secs));
    }
    // Bookkeeping only: a failed write must not refuse the request.
    match sentinela_core::repo::api_keys::touch(state.control(), &key, now).await {
        // The cached copy learns it too, or every request until it expires would write again.
        Ok(true) => state
            .keys
            .update(&key.key_hash, |cached| cached.last_used_at = Some(now)),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, key_id = key.id, "could not record the key's last use");
        }
    }
    Ok(Principal {
        key_id: key.id,
        user_id: key.user_id,
        city_id: key.city_id,
        admin: key.is_admin,
    })
}

/// A new random secret: `snt_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("snt_{}", hex::encode(bytes))
}

pub use sentinela_core::repo::api_keys::{create_key, find_key, hash_key, key_active};

/// What [`ensure_admin_key`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// The key did not exist and was created as an admin key.
    Created,
    /// The key exists and is a usable admin key.
    Present,
    /// The key was revoked: it stays revoked (rotate `SENTINELA_ADMIN_KEY`).
    Revoked,
    /// The secret belongs to a key that is not admin; it is left as it is.
    NotAdmin,
}

/// Creates the bootstrap admin key (`SENTINELA_ADMIN_KEY`) when it does not exist. An existing
/// key is never changed: a revoked bootstrap key stays revoked across restarts, and a secret that
/// is some city's key does not become admin.
///
/// # Errors
/// The database error.
pub async fn ensure_admin_key(db: &impl ConnectionTrait, secret: &str) -> Result<Bootstrap, DbErr> {
    match find_key(db, secret).await? {
        Some(key) if key.revoked_at.is_some() => Ok(Bootstrap::Revoked),
        Some(key) if !key.is_admin => Ok(Bootstrap::NotAdmin),
        Some(_) => Ok(Bootstrap::Present),
        None => create_key(db, secret, "bootstrap admin", "admin", None)
            .await
            .map(|_| Bootstrap::Created),
    }
}
