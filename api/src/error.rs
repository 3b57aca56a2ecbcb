//! The API's one error type: every failure is JSON `{code, message, field?}` with a fitting status.
//! Client errors say what was wrong and which field; server errors log their cause chain and
//! answer with a generic message.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use sentinela_core::domain::ParseError;

/// The body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    /// Machine-readable code: `bad_request`, `unauthorized`, `not_found`, `conflict`…
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    /// A search over a cap: what it was estimated to be.
    pub estimate: Option<crate::routes::searches::EstimateView>,
    /// The cap or quota that was reached.
    pub limit: Option<u64>,
    /// What to change.
    pub hint: Option<String>,
}

/// An error answer.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request.
    #[oai(status = 400)]
    BadRequest(Json<Box<ErrorBody>>),
    /// Missing, unknown or revoked API key.
    #[oai(status = 401)]
    Unauthorized(Json<Box<ErrorBody>>),
    /// The key may not do this.
    #[oai(status = 403)]
    Forbidden(Json<Box<ErrorBody>>),
    /// No such object (or not in the key's city).
    #[oai(status = 404)]
    NotFound(Json<Box<ErrorBody>>),
    /// Conflicts with existing data.
    #[oai(status = 409)]
    Conflict(Json<Box<ErrorBody>>),
    /// Well-formed but invalid (dates, criteria…).
    #[oai(status = 422)]
    Unprocessable(Json<Box<ErrorBody>>),
    /// Too many at once: a quota of the key or the city. `Retry-After` says when to try again.
    #[oai(status = 429)]
    TooManyRequests(
        Json<Box<ErrorBody>>,
        /// Seconds to wait.
        #[oai(header = "Retry-After")]
        u64,
        /// Requests allowed per window (request quota only).
        #[oai(header = "RateLimit-Limit")]
        Option<u64>,
        /// Requests left in the window (request quota only).
        #[oai(header = "RateLimit-Remaining")]
        Option<u64>,
        /// Seconds until the window resets (request quota only).
        #[oai(header = "RateLimit-Reset")]
        Option<u64>,
    ),
    /// Server fault.
    #[oai(status = 500)]
    Internal(Json<Box<ErrorBody>>),
    /// A dependency is down.
    #[oai(status = 503)]
    Unavailable(Json<Box<ErrorBody>>),
}

fn body(code: &str, message: impl Into<String>, field: Option<&str>) -> Json<Box<ErrorBody>> {
    Json(Box::new(ErrorBody {
        code: code.to_owned(),
        message: message.into(),
        field: field.map(str::to_owned),
        estimate: None,
        limit: None,
        hint: None,
    }))
}

impl ApiError {
    /// 400 naming a field.
    pub fn bad_request(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::BadRequest(body("bad_request", message, field))
    }

    /// 422 naming a field.
    pub fn invalid(message: impl Into<String>, field: &str) -> Self {
        Self::Unprocessable(body("invalid", message, Some(field)))
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(body("unauthorized", message, None))
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(body("forbidden", message, None))
    }

    /// 404 for a kind of object and its id.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(body("not_found", format!("{what} {id} not found"), None))
    }

    /// 409.
    pub fn conflict(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::Conflict(body("conflict", message, field))
    }

    /// 429: try again in `retry_after` seconds.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self::TooManyRequests(
            body("too_many_requests", message, None),
            retry_after,
            None,
            None,
            None,
        )
    }

    /// 429 for a key over its request quota, with the `RateLimit-*` headers.
    pub fn over_request_quota(limit: u32, reset_secs: u64) -> Self {
        Self::TooManyRequests(
            body(
                "too_many_requests",
                format!("this API key made more than {limit} requests this minute"),
                None,
            ),
            reset_secs,
            Some(u64::from(limit)),
            Some(0),
            Some(reset_secs),
        )
    }

    /// 422 for a search over a cap, carrying its estimate, the cap and a hint.
    pub fn over_cap(
        message: impl Into<String>,
        field: &str,
        estimate: crate::routes::searches::EstimateView,
        limit: u64,
    ) -> Self {
        let mut b = body("over_cap", message, Some(field));
        b.0.estimate = Some(estimate);
        b.0.limit = Some(limit);
        b.0.hint = Some(
            "narrow the window (start_date, end_date) or pick fewer cameras (camera_ids)".into(),
        );
        Self::Unprocessable(b)
    }

    /// 503 naming the part that is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(body("unavailable", message, None))
    }

    /// 500: logs the cause chain, answers with a generic message.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        tracing::error!(error = %format!("{error:#}"), "internal error");
        Self::Internal(body("internal", "internal server error", None))
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        Self::invalid(e.to_string(), e.field)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        if sentinela_core::repo::is_unique_violation(&e) {
            return Self::conflict("an object with the same unique value already exists", None);
        }
        if sentinela_core::repo::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return Self::unavailable(
                "a database this request needs is unavailable (a city's own database may be down); \
                 try again later",
            );
        }
        Self::internal(e)
    }
}

/// Turns any error poem or poem-openapi raised outside our handlers (unparsable JSON, a missing
/// field, an unknown route, a missing key) into the same JSON shape. Our own [`ApiError`]s already
/// are JSON and pass through unchanged.
pub async fn to_json_error(err: poem::Error) -> poem::Response {
    let response = err.into_response();
    let is_json = response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let status = response.status();
    let message = response.into_body().into_string().await.unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid",
        429 => "too_many_requests",
        s if s >= 500 => "internal",
        _ => "error",
    };
    // poem-openapi names the field in its messages as "field `name`".
    let field = message
        .split("field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let message = if status.is_server_error() {
        tracing::error!(%message, "unhandled server error");
        "internal server error".to_owned()
    } else if status.as_u16() == 401 && !message.contains("key") {
        "missing or invalid API key (Authorization: Bearer <key>)".to_owned()
    } else if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    json_response(status, code, &message, field.as_deref())
}

/// Middleware: a query or path parameter that does not parse or is out of range (an id beyond
/// i64, a negative offset) answers 422 naming the parameter, like every other invalid field.
/// Path parameters are named by the route template (poem-openapi reports them by position).
pub async fn param_errors<E: poem::Endpoint>(
    endpoint: std::sync::Arc<E>,
    request: poem::Request,
    routes: std::sync::Arc<crate::metrics::Routes>,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let path = request.uri().path().to_owned();
    let err = match endpoint.call(request).await {
        Ok(response) => return Ok(response.into_response()),
        Err(err) => err,
    };
    let invalid = |name: &str, reason: &str| {
        Ok(json_response(
            poem::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            &format!("{name}: {reason}"),
            Some(name),
        ))
    };
    if let Some(param) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        return invalid(param.name, &param.reason);
    }
    if let Some(param) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
        let name = param
            .name
            .strip_prefix("param")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|i| routes.path_params(&path).into_iter().nth(i))
            .unwrap_or_else(|| param.name.to_owned());
        return invalid(&name, &param.reason);
    }
    Err(err)
}

/// A JSON error response `{code, message, field?}`.
pub fn json_response(
    status: poem::http::StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> poem::Response {
    let mut body = serde_json::json!({"code": code, "message": message});
    if let Some(field) = field {
        body["field"] = serde_json::Value::String(field.to_owned());
    }
    poem::Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// The answer to a handler that panicked: a logged 500 in the same JSON shape.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> poem::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    json_response(
        poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
        None,
    )
}
