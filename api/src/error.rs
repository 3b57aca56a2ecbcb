//! The API's one error type: every failure is JSON `{code, message, field?}` with a fitting status.
//! Client errors say what was wrong and which field; server errors log their cause chain and
//! answer with a generic message.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use sentinela_core::domain::ParseError;

/// The body of every error response: an RFC 9457 problem detail (`application/problem+json`)
/// with Sentinela's `code`, the field at fault and, for a request with several faults, each of
/// them.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct Problem {
    /// The kind of problem, `urn:sentinela:problem:<code>` (see `code`).
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong here, for a person.
    pub detail: String,
    /// Machine-readable code: `bad_request`, `invalid`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `over_cap`, `too_many_requests`, `unavailable`, `internal`…
    pub code: String,
    /// The request field at fault (the first, when there are several).
    pub field: Option<String>,
    /// Every field at fault, when the request had several faults.
    pub errors: Option<Vec<FieldProblem>>,
    /// A search over a cap: what it was estimated to be.
    pub estimate: Option<crate::routes::searches::EstimateView>,
    /// The cap or quota that was reached.
    pub limit: Option<u64>,
    /// What to change.
    pub hint: Option<String>,
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        let mut p = problem(
            "invalid",
            422,
            "end_date: must be after start_date; color: \"furta-cor\" is not a colour",
            Some("end_date"),
        );
        p.errors = Some(vec![
            FieldProblem {
                field: "end_date".into(),
                detail: "must be after start_date".into(),
            },
            FieldProblem {
                field: "color".into(),
                detail: "\"furta-cor\" is not a colour".into(),
            },
        ]);
        p
    }
}

/// One field at fault.
#[derive(Debug, Clone, Object)]
pub struct FieldProblem {
    /// The field, as a path into the request (`camera_ids[1]`, `start_date`, a parameter's name).
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Box<Problem>>),
    /// Missing, unknown, expired or revoked API key.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Box<Problem>>),
    /// The key may not do this.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Box<Problem>>),
    /// No such object (or not in the key's city).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Box<Problem>>),
    /// Conflicts with existing data.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Box<Problem>>),
    /// Well-formed but invalid (dates, criteria…): every field at fault is listed.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Box<Problem>>),
    /// Too many at once: a quota of the key or the city. `Retry-After` says when to try again.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(
        Json<Box<Problem>>,
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
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Box<Problem>>),
    /// A dependency is down.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Box<Problem>>),
}

/// The title of each code.
fn title(code: &str) -> &'static str {
    match code {
        "bad_request" => "Malformed request",
        "invalid" => "Invalid request",
        "over_cap" => "Search over its city's cap",
        "unauthorized" => "Missing or unusable API key",
        "forbidden" => "Not allowed for this API key",
        "not_found" => "Not found",
        "method_not_allowed" => "Method not allowed",
        "conflict" => "Conflicts with existing data",
        "payload_too_large" => "Body too large",
        "unsupported_media_type" => "Unsupported media type",
        "too_many_requests" => "Too many requests",
        "unavailable" => "A dependency is unavailable",
        "internal" => "Internal server error",
        _ => "Error",
    }
}

fn problem(code: &str, status: u16, detail: impl Into<String>, field: Option<&str>) -> Problem {
    Problem {
        kind: format!("urn:sentinela:problem:{code}"),
        title: title(code).to_owned(),
        status,
        detail: detail.into(),
        code: code.to_owned(),
        field: field.map(str::to_owned),
        errors: None,
        estimate: None,
        limit: None,
        hint: None,
    }
}

fn body(
    code: &str,
    status: u16,
    detail: impl Into<String>,
    field: Option<&str>,
) -> Json<Box<Problem>> {
    Json(Box::new(problem(code, status, detail, field)))
}

impl ApiError {
    /// The problem detail this error answers with.
    pub fn problem(&self) -> &Problem {
        match self {
            Self::BadRequest(p)
            | Self::Unauthorized(p)
            | Self::Forbidden(p)
            | Self::NotFound(p)
            | Self::Conflict(p)
            | Self::Unprocessable(p)
            | Self::Internal(p)
            | Self::Unavailable(p)
            | Self::TooManyRequests(p, ..) => &p.0,
        }
    }

    /// 400 naming a field.
    pub fn bad_request(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::BadRequest(body("bad_request", 400, message, field))
    }

    /// 422 naming a field.
    pub fn invalid(message: impl Into<String>, field: &str) -> Self {
        Self::Unprocessable(body("invalid", 422, message, Some(field)))
    }

    /// 422 listing every field at fault (`(field, what is wrong)`, at least one).
    pub fn invalid_fields(faults: Vec<(String, String)>) -> Self {
        if let [(field, message)] = faults.as_slice() {
            return Self::invalid(message.clone(), field);
        }
        let detail = faults
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut b = body(
            "invalid",
            422,
            detail,
            faults.first().map(|(f, _)| f.as_str()),
        );
        b.0.errors = Some(
            faults
                .into_iter()
                .map(|(field, detail)| FieldProblem { field, detail })
                .collect(),
        );
        Self::Unprocessable(b)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(body("unauthorized", 401, message, None))
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(body("forbidden", 403, message, None))
    }

    /// 404 for a kind of object and its id.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(body(
            "not_found",
            404,
            format!("{what} {id} not found"),
            None,
        ))
    }

    /// 409.
    pub fn conflict(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::Conflict(body("conflict", 409, message, field))
    }

    /// 429: try again in `retry_after` seconds.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self::TooManyRequests(
            body("too_many_requests", 429, message, None),
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
                429,
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
        let mut b = body("over_cap", 422, message, Some(field));
        b.0.estimate = Some(estimate);
        b.0.limit = Some(limit);
        b.0.hint = Some(
            "narrow the window (start_date, end_date) or pick fewer cameras (camera_ids)".into(),
        );
        Self::Unprocessable(b)
    }

    /// 503 naming the part that is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(body("unavailable", 503, message, None))
    }

    /// 500: logs the cause chain, answers with a generic message.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        tracing::error!(error = %format!("{error:#}"), "internal error");
        Self::Internal(body("internal", 500, "internal server error", None))
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

/// Turns any error poem or poem-openapi raised outside our handlers (unparsable JSON, an unknown
/// route, a missing key) into the same problem detail. Our own [`ApiError`]s already are and pass
/// through unchanged.
pub async fn to_json_error(err: poem::Error) -> poem::Response {
    let response = err.into_response();
    let is_json = response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
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

/// A copy of a request's JSON body, kept by the body-limit middleware so a refused body can be
/// checked field by field.
#[derive(Debug, Clone)]
pub struct RawBody(pub std::sync::Arc<Vec<u8>>);

/// Middleware: a query or path parameter that does not parse or is out of range (an id beyond
/// i64, a negative offset) answers 422 naming the parameter, like every other invalid field; a
/// JSON body poem-openapi refuses answers 422 listing every field at fault (see
/// [`crate::body_check`]), or 400 when it is not JSON at all.
/// Path parameters are named by the route template (poem-openapi reports them by position).
pub async fn param_errors<E: poem::Endpoint>(
    endpoint: std::sync::Arc<E>,
    request: poem::Request,
    routes: std::sync::Arc<crate::metrics::Routes>,
    bodies: std::sync::Arc<crate::body_check::BodySchemas>,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    let raw = request.extensions().get::<RawBody>().cloned();
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
    if err.is::<poem_openapi::error::ParseRequestPayloadError>()
        && let Some(raw) = raw
        && let Some(faults) = bodies.check(&method, routes.label(&path), &raw.0)
    {
        match faults.as_slice() {
            [] => {}
            [only] if only.field.is_empty() => {
                return Ok(json_response(
                    poem::http::StatusCode::BAD_REQUEST,
                    "bad_request",
                    &only.message,
                    None,
                ));
            }
            _ => {
                let faults = faults.into_iter().map(|f| (f.field, f.message)).collect();
                return Ok(ApiError::invalid_fields(faults).into_response());
            }
        }
    }
    Err(err)
}

/// A problem-detail response (see [`Problem`]).
pub fn json_response(
    status: poem::http::StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> poem::Response {
    let body = problem(code, status.as_u16(), message, field);
    let mut json = serde_json::json!({
        "type": body.kind,
        "title": body.title,
        "status": body.status,
        "detail": body.detail,
        "code": body.code,
    });
    if let Some(field) = body.field {
        json["field"] = serde_json::Value::String(field);
    }
    poem::Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON)
        .body(json.to_string())
}

/// What a panic said (its `&str` or `String` payload; empty otherwise).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The answer to a handler that panicked: a logged 500 in the same JSON shape.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> poem::Response {
    let what = panic_message(&*panic);
    tracing::error!(panic = %what, "a request handler panicked");
    json_response(
        poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
        None,
    )
}
