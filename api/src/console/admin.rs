//! The console's administration pages (admin keys only): cities, cameras, a camera's recordings,
//! API keys and the jobs. Every change is a form with the session's CSRF token, going through the
//! same repository functions and checks as the API.

use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, Route, get, handler, post};
use serde::Deserialize;

use super::i18n::Lang;
use super::{
    Signed, csrf_ok, error_page, forbidden, html_response, in_zone, page, problem_lines, redirect,
    signed_in,
};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;
use sentinela_core::repo::{api_keys, cameras, cities, recordings, tasks};

/// The administration routes, nested at `/console/admin`.
pub(super) fn routes() -> Route {
    Route::new()
        .at("/cities", get(city_list))
        .at("/cities/:id", post(city_update))
        .at("/cameras", get(camera_list).post(camera_create))
        .at("/cameras/:id/enabled", post(camera_enabled))
        .at("/cameras/:id/coordinates", post(camera_coordinates))
        .at("/cameras/:id/recordings", get(recording_list))
        .at(
            "/cameras/:id/recordings/:recording/delete",
            post(recording_delete),
        )
        .at("/keys", get(key_list).post(key_create))
        .at("/keys/:id/revoke", post(key_revoke))
        .at("/jobs", get(jobs))
}

/// A signed-in admin, or the response to give instead.
async fn admin(state: &AppState, request: &Request) -> Result<Signed, Response> {
    match signed_in(state, request).await {
        Ok(Some(signed)) if signed.principal.is_admin() => Ok(signed),
        Ok(Some(signed)) => Err(error_page(
            signed.lang,
            Some(&signed),
            ApiError::not_found("page", request.uri().path()),
        )),
        Ok(None) => Err(redirect("/console/login")),
        Err(e) => Err(error_page(Lang::of(request), None, e)),
    }
}

macro_rules! require_admin {
    ($state:expr, $request:expr) => {
        match admin($state, $request).await {
            Ok(signed) => signed,
            Err(response) => return response,
        }
    };
}

macro_rules! require_csrf {
    ($signed:expr, $token:expr) => {
        if !csrf_ok(&$signed, $token.as_deref().unwrap_or_default()) {
            return forbidden($signed.lang, Some(&$signed));
        }
    };
}

fn message_box(lang: Lang, errors: &[(String, String)]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.error role="alert" {
                p { (lang.t("errors")) }
                ul { @for (f, m) in errors { li { @if !f.is_empty() { strong { (f) } ": " } (m) } } }
            }
        }
    }
}

fn admin_page(signed: &Signed, title: &str, status: StatusCode, body: Markup) -> Response {
    html_response(status, page(signed.lang, Some(signed), title, body))
}

fn opt(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// A blank form field is "none"; anything else must be a positive whole number.
fn limit(value: &Option<String>) -> Result<Option<i64>, String> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("{v:?}: a positive whole number, or blank")),
    }
}

#[handler]
async fn city_list(state: Data<&AppState>, request: &Request) -> Response {
    let signed = require_admin!(&state, request);
    city_page(&state, &signed, &[], StatusCode::OK).await
}

async fn city_page(
    state: &AppState,
    signed: &Signed,
    errors: &[(String, String)],
    status: StatusCode,
) -> Response {
    let lang = signed.lang;
    let all = match cities::list(state.control()).await {
        Ok(all) => all,
        Err(e) => return error_page(lang, Some(signed), e.into()),
    };
    let body = html! {
        h1 { (lang.t("cities")) }
        (message_box(lang, errors))
        @for c in &all {
            form.card method="post" action={ "/console/admin/cities/" (c.id) } {
                h2 { (c.name) " " small { "#" (c.id) " · " (c.timezone) } }
                input type="hidden" name="csrf" value=(signed.csrf);
                label for={ "ret" (c.id) } { (lang.t("retention_days")) }
                input id={ "ret" (c.id) } name="recording_retention_days" type="number" min="1" max="3650" required value=(c.recording_retention_days);
                label for={ "cap" (c.id) } { (lang.t("storage_cap")) }
                input id={ "cap" (c.id) } name="max_storage_bytes" type="number" min="1" value=(opt(c.max_storage_bytes));
                label for={ "fly" (c.id) } { (lang.t("searches_in_flight")) }
                input id={ "fly" (c.id) } name="max_searches_in_flight" type="number" min="1" max="1000" value=(opt(c.max_searches_in_flight.map(i64::from)));
                label for={ "calls" (c.id) } { (lang.t("daily_calls")) }
                input id={ "calls" (c.id) } name="daily_detector_calls" type="number" min="1" value=(opt(c.daily_detector_calls));
                button type="submit" { (lang.t("save")) }
            }
        }
    };
    admin_page(signed, lang.t("cities"), status, body)
}

#[derive(Deserialize)]
struct CityForm {
    csrf: Option<String>,
    recording_retention_days: Option<String>,
    max_storage_bytes: Option<String>,
    max_searches_in_flight: Option<String>,
    daily_detector_calls: Option<String>,
}

#[handler]
async fn city_update(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Form(form): Form<CityForm>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let lang = signed.lang;
    let mut errors = Vec::new();
    let mut field = |name: &str, value: &Option<String>| match limit(value) {
        Ok(v) => v,
        Err(e) => {
            errors.push((name.to_owned(), e));
            None
        }
    };
    let retention = field("recording_retention_days", &form.recording_retention_days)
        .filter(|d| *d <= 3650)
        .and_then(|d| i32::try_from(d).ok());
    let storage = field("max_storage_bytes", &form.max_storage_bytes);
    let in_flight = field("max_searches_in_flight", &form.max_searches_in_flight)
        .and_then(|n| i32::try_from(n.min(1000)).ok());
    let calls = field("daily_detector_calls", &form.daily_detector_calls);
    if retention.is_none() && errors.is_empty() {
        errors.push(("recording_retention_days".into(), "1 to 3650 days".into()));
    }
    if !errors.is_empty() {
        return city_page(&state, &signed, &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let city = match cities::get(state.control(), id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error_page(lang, Some(&signed), ApiError::not_found("city", id)),
        Err(e) => return error_page(lang, Some(&signed), e.into()),
    };
    let changes = cities::CityChanges {
        recording_retention_days: retention,
        max_storage_bytes: Some(storage),
        max_searches_in_flight: Some(in_flight),
        daily_detector_calls: Some(calls),
        ..Default::default()
    };
    let updated = cities::update(state.control(), city, changes).await;
    state.forget_city(id);
    let updated = match updated {
        Ok(c) => c,
        Err(e) => return error_page(lang, Some(&signed), e.into()),
    };
    if updated.database_url.is_some() {
        match state.city_db(updated.id).await {
            Ok(db) => {
                if let Err(e) = cities::mirror(&db, &updated).await {
                    return error_page(lang, Some(&signed), e.into());
                }
            }
            Err(e) => return error_page(lang, Some(&signed), e),
        }
    }
    redirect("/console/admin/cities")
}

#[handler]
async fn camera_list(state: Data<&AppState>, request: &Request) -> Response {
    let signed = require_admin!(&state, request);
    camera_page(&state, &signed, &[], StatusCode::OK).await
}

async fn camera_page(
    state: &AppState,
    signed: &Signed,
    errors: &[(String, String)],
    status: StatusCode,
) -> Response {
    let lang = signed.lang;
    let all_cities = cities::list(state.control()).await.unwrap_or_default();
    let mut rows = Vec::new();
    match state.dbs.all().await {
        Ok(databases) => {
            for database in databases {
                rows.extend(
                    cameras::page(&database.conn, None, None, None, 10_000)
                        .await
                        .unwrap_or_default(),
                );
            }
        }
        Err(e) => return error_page(lang, Some(signed), e.into()),
    }
    rows.sort_by_key(|c| c.id);
    let city_name = |id: i64| {
        all_cities
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    };
    let body = html! {
        h1 { (lang.t("cameras")) }
        (message_box(lang, errors))
        table #cameras {
            thead { tr {
                th scope="col" { "#" } th scope="col" { (lang.t("city")) } th scope="col" { (lang.t("name")) }
                th scope="col" { (lang.t("coordinates")) } th scope="col" { (lang.t("folder")) }
                th scope="col" { (lang.t("enabled")) } th scope="col" { (lang.t("recordings")) }
            } }
            tbody {
                @for c in &rows {
                    tr data-camera=(c.id) {
                        td { (c.id) } td { (city_name(c.city_id)) } td { (c.name) }
                        td {
                            @if let (Some(lat), Some(lon)) = (c.latitude, c.longitude) { (format!("{lat:.5}, {lon:.5}")) } @else { "-" }
                            form.coords method="post" action={ "/console/admin/cameras/" (c.id) "/coordinates" } {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                input name="latitude" type="number" step="any" min="-90" max="90"
                                    aria-label={ (lang.t("latitude")) " " (c.name) } value=(c.latitude.map(|v| v.to_string()).unwrap_or_default());
                                input name="longitude" type="number" step="any" min="-180" max="180"
                                    aria-label={ (lang.t("longitude")) " " (c.name) } value=(c.longitude.map(|v| v.to_string()).unwrap_or_default());
                                button type="submit" { (lang.t("save")) }
                            }
                        }
                        td { (c.mediamtx_path.as_deref().unwrap_or("-")) }
                        td {
                            form.inline method="post" action={ "/console/admin/cameras/" (c.id) "/enabled" } {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                input type="hidden" name="enabled" value=(if c.enabled { "false" } else { "true" });
                                button type="submit" aria-label={ (lang.t("enabled")) " " (c.name) } {
                                    (if c.enabled { lang.t("disable") } else { lang.t("enable") })
                                }
                            }
                        }
                        td { a href={ "/console/admin/cameras/" (c.id) "/recordings" } { (lang.t("recordings")) } }
                    }
                }
            }
        }
        h2 { (lang.t("add_camera")) }
        form #add-camera method="post" action="/console/admin/cameras" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label for="cam_city" { (lang.t("city")) }
            select #cam_city name="city_id" required {
                @for c in &all_cities { option value=(c.id) { (c.name) } }
            }
            label for="cam_name" { (lang.t("name")) }
            input #cam_name name="name" required maxlength="200";
            label for="cam_lat" { (lang.t("latitude")) }
            input #cam_lat name="latitude" type="number" step="any" min="-90" max="90";
            label for="cam_lon" { (lang.t("longitude")) }
            input #cam_lon name="longitude" type="number" step="any" min="-180" max="180";
            label for="cam_path" { (lang.t("folder")) }
            input #cam_path name="mediamtx_path" maxlength="255";
            button type="submit" { (lang.t("add_camera")) }
        }
    };
    admin_page(signed, lang.t("cameras"), status, body)
}

#[derive(Deserialize)]
struct CameraForm {
    csrf: Option<String>,
    city_id: Option<String>,
    name: Option<String>,
    latitude: Option<String>,
    longitude: Option<String>,
    mediamtx_path: Option<String>,
}

#[handler]
async fn camera_create(
    state: Data<&AppState>,
    request: &Request,
    Form(form): Form<CameraForm>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let mut errors = Vec::new();
    let latitude = coordinate(&form.latitude, 90.0).unwrap_or_else(|()| {
        errors.push(("latitude".to_owned(), "-90 to 90".to_owned()));
        None
    });
    let longitude = coordinate(&form.longitude, 180.0).unwrap_or_else(|()| {
        errors.push(("longitude".to_owned(), "-180 to 180".to_owned()));
        None
    });
    let name = form
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(("name".into(), "1 to 200 characters".into()));
    }
    let city = form.city_id.as_deref().and_then(|c| c.parse::<i64>().ok());
    let path = match form
        .mediamtx_path
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(p) => match sentinela_core::files::normalize(p) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(("mediamtx_path".into(), e.to_string()));
                None
            }
        },
        None => None,
    };
    let db = match city {
        Some(id) => match state.city_db(id).await {
            Ok(db) => Some(db),
            Err(_) => {
                errors.push(("city_id".into(), format!("unknown city {id}")));
                None
            }
        },
        None => {
            errors.push(("city_id".into(), "required".into()));
            None
        }
    };
    if let (true, Some(db), Some(city)) = (errors.is_empty(), db, city) {
        let created = cameras::create(
            state.control(),
            &db,
            cameras::NewCamera {
                city_id: city,
                name,
                location: None,
                latitude,
                longitude,
                mediamtx_path: path,
            },
        )
        .await;
        match created {
            Ok(_) => return redirect("/console/admin/cameras"),
            Err(e) if sentinela_core::repo::is_unique_violation(&e) => errors.push((
                "name".into(),
                "a camera with this name (in the city) or folder already exists".into(),
            )),
            Err(e) => return error_page(signed.lang, Some(&signed), e.into()),
        }
    }
    camera_page(&state, &signed, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// A coordinate from a form field: blank is none; else within ±`bound`.
fn coordinate(value: &Option<String>, bound: f64) -> Result<Option<f64>, ()> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n.abs() <= bound => Ok(Some(n)),
            _ => Err(()),
        },
    }
}

#[derive(Deserialize)]
struct CoordinatesForm {
    csrf: Option<String>,
    latitude: Option<String>,
    longitude: Option<String>,
}

#[handler]
async fn camera_coordinates(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Form(form): Form<CoordinatesForm>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let (Ok(latitude), Ok(longitude)) = (
        coordinate(&form.latitude, 90.0),
        coordinate(&form.longitude, 180.0),
    ) else {
        let errors = [(
            signed.lang.t("coordinates").to_owned(),
            "latitude -90 to 90, longitude -180 to 180".to_owned(),
        )];
        return camera_page(&state, &signed, &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let changes = cameras::CameraChanges {
        latitude: Some(latitude),
        longitude: Some(longitude),
        ..Default::default()
    };
    change_camera(&state, &signed, id, changes).await
}

/// Applies `changes` to camera `id` (as the API's PATCH does), back to the cameras page.
async fn change_camera(
    state: &AppState,
    signed: &Signed,
    id: i64,
    changes: cameras::CameraChanges,
) -> Response {
    let auth = ApiKeyAuth(signed.principal.clone());
    let (camera, db) = match crate::routes::cameras::visible_camera(state, &auth, id).await {
        Ok(found) => found,
        Err(e) => return error_page(signed.lang, Some(signed), e),
    };
    match cameras::update(state.control(), &db, camera, changes).await {
        Ok(_) => redirect("/console/admin/cameras"),
        Err(e) => error_page(signed.lang, Some(signed), e.into()),
    }
}

#[derive(Deserialize)]
struct EnabledForm {
    csrf: Option<String>,
    enabled: Option<String>,
}

#[handler]
async fn camera_enabled(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Form(form): Form<EnabledForm>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let changes = cameras::CameraChanges {
        enabled: Some(form.enabled.as_deref() == Some("true")),
        ..Default::default()
    };
    change_camera(&state, &signed, id, changes).await
}

#[derive(Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
}

#[handler]
async fn recording_list(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Query(window): Query<Window>,
) -> Response {
    let signed = require_admin!(&state, request);
    let lang = signed.lang;
    let auth = ApiKeyAuth(signed.principal.clone());
    let (camera, db) = match crate::routes::cameras::visible_camera(&state, &auth, id).await {
        Ok(found) => found,
        Err(e) => return error_page(lang, Some(&signed), e),
    };
    let zone_name = super::city_zone(&state, camera.city_id).await;
    let zone: chrono_tz::Tz = zone_name.parse().unwrap_or(chrono_tz::UTC);
    let from = window
        .from
        .as_deref()
        .and_then(|v| super::local_time(v, zone));
    let to = window
        .to
        .as_deref()
        .and_then(|v| super::local_time(v, zone));
    let range = match (from, to) {
        (Some(f), Some(t)) => sentinela_core::domain::TimeRange::new(f, t).ok(),
        _ => None,
    };
    let rows = match recordings::camera_page(&db, camera.id, range.as_ref(), None, 500).await {
        Ok(rows) => rows,
        Err(e) => return error_page(lang, Some(&signed), e.into()),
    };
    let body = html! {
        p { a href="/console/admin/cameras" { "← " (lang.t("back")) } }
        h1 { (lang.t("recordings")) " · " (camera.name) }
        form.filters method="get" {
            label for="from" { (lang.t("start")) }
            input #from type="datetime-local" step="1" name="from" value=(window.from.clone().unwrap_or_default());
            label for="to" { (lang.t("end")) }
            input #to type="datetime-local" step="1" name="to" value=(window.to.clone().unwrap_or_default());
            button type="submit" { (lang.t("filter")) }
        }
        table #recordings {
            thead { tr {
                th scope="col" { "#" } th scope="col" { (lang.t("start")) } th scope="col" { (lang.t("end")) }
                th scope="col" { (lang.t("file")) } th scope="col" { "bytes" } th scope="col" { "" }
            } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.id) }
                        td { (in_zone(r.started_at, &zone_name, lang)) }
                        td { (in_zone(r.ended_at, &zone_name, lang)) }
                        td { (r.file_path) }
                        td { (r.size_bytes) }
                        td {
                            form.inline method="post" action={ "/console/admin/cameras/" (camera.id) "/recordings/" (r.id) "/delete" } {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                button type="submit" aria-label={ (lang.t("delete")) " " (r.file_path) } { (lang.t("delete")) }
                            }
                        }
                    }
                }
            }
        }
        @if rows.len() == 500 { p.help { (lang.t("first_500")) } }
    };
    admin_page(&signed, lang.t("recordings"), StatusCode::OK, body)
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

#[handler]
async fn recording_delete(
    state: Data<&AppState>,
    request: &Request,
    Path((camera_id, id)): Path<(i64, i64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let lang = signed.lang;
    let auth = ApiKeyAuth(signed.principal.clone());
    let (camera, db) = match crate::routes::cameras::visible_camera(&state, &auth, camera_id).await
    {
        Ok(found) => found,
        Err(e) => return error_page(lang, Some(&signed), e),
    };
    let recording = match recordings::get(&db, id).await {
        Ok(Some(r)) if r.camera_id == camera.id => r,
        Ok(_) => return error_page(lang, Some(&signed), ApiError::not_found("recording", id)),
        Err(e) => return error_page(lang, Some(&signed), e.into()),
    };
    match recordings::holders(&db, recording.id).await {
        Ok(h) if h.searches_in_flight == 0 && h.sightings == 0 => {}
        Ok(h) => {
            let body = html! {
                h1 { (lang.t("not_deleted")) }
                p.error role="alert" {
                    (format!("{} · {} / {}", recording.file_path, h.searches_in_flight, h.sightings))
                    " — " (lang.t("held"))
                }
                p { a href={ "/console/admin/cameras/" (camera.id) "/recordings" } { "← " (lang.t("back")) } }
            };
            return admin_page(&signed, lang.t("not_deleted"), StatusCode::CONFLICT, body);
        }
        Err(e) => return error_page(lang, Some(&signed), e.into()),
    }
    if let Err(e) = crate::routes::recordings::delete_row(&db, recording.id).await {
        return error_page(lang, Some(&signed), e);
    }
    redirect(&format!("/console/admin/cameras/{}/recordings", camera.id))
}

#[handler]
async fn key_list(state: Data<&AppState>, request: &Request) -> Response {
    let signed = require_admin!(&state, request);
    key_page(&state, &signed, None, &[], StatusCode::OK).await
}

async fn key_page(
    state: &AppState,
    signed: &Signed,
    secret: Option<&str>,
    errors: &[(String, String)],
    status: StatusCode,
) -> Response {
    let lang = signed.lang;
    let keys = match api_keys::page(state.control(), None, None, 1000).await {
        Ok(k) => k,
        Err(e) => return error_page(lang, Some(signed), e.into()),
    };
    let all_cities = cities::list(state.control()).await.unwrap_or_default();
    let body = html! {
        h1 { (lang.t("keys")) }
        (message_box(lang, errors))
        @if let Some(secret) = secret {
            div.secret role="status" {
                p { strong { (lang.t("secret_once")) } }
                p { code #new-secret { (secret) } }
            }
        }
        table #keys {
            thead { tr {
                th scope="col" { "#" } th scope="col" { (lang.t("name")) } th scope="col" { (lang.t("user")) }
                th scope="col" { (lang.t("city")) } th scope="col" { (lang.t("last_used")) } th scope="col" { "" }
            } }
            tbody {
                @for k in &keys {
                    tr {
                        td { (k.id) " " code { (k.prefix) "…" } }
                        td { (k.name) } td { (k.user_id) }
                        td { (k.city_id.map_or_else(|| "admin".to_owned(), |c| c.to_string())) }
                        td { (k.last_used_at.map(|t| in_zone(t, "America/Sao_Paulo", lang)).unwrap_or_default()) }
                        td {
                            @if k.revoked_at.is_some() { (lang.t("revoked")) } @else {
                                form.inline method="post" action={ "/console/admin/keys/" (k.id) "/revoke" } {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    button type="submit" aria-label={ (lang.t("revoke")) " " (k.name) } { (lang.t("revoke")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("new_key")) }
        form #new-key method="post" action="/console/admin/keys" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label for="key_name" { (lang.t("name")) }
            input #key_name name="name" required maxlength="200";
            label for="key_user" { (lang.t("user")) }
            input #key_user name="user_id" required maxlength="200";
            label for="key_city" { (lang.t("city")) }
            select #key_city name="city_id" {
                @for c in &all_cities { option value=(c.id) { (c.name) } }
                option value="" { "admin" }
            }
            button type="submit" { (lang.t("new_key")) }
        }
    };
    admin_page(signed, lang.t("keys"), status, body)
}

#[derive(Deserialize)]
struct KeyForm {
    csrf: Option<String>,
    name: Option<String>,
    user_id: Option<String>,
    city_id: Option<String>,
}

#[handler]
async fn key_create(
    state: Data<&AppState>,
    request: &Request,
    Form(form): Form<KeyForm>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let (name, user) = (text(&form.name), text(&form.user_id));
    let mut errors = Vec::new();
    for (field, value) in [("name", &name), ("user_id", &user)] {
        if value.is_empty() || value.chars().count() > 200 {
            errors.push((field.to_owned(), "1 to 200 characters".to_owned()));
        }
    }
    let city = match form.city_id.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<i64>() {
            Ok(id) if matches!(cities::get(state.control(), id).await, Ok(Some(_))) => Some(id),
            _ => {
                errors.push(("city_id".into(), format!("unknown city {c}")));
                None
            }
        },
    };
    if !errors.is_empty() {
        return key_page(
            &state,
            &signed,
            None,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let secret = crate::auth::new_secret();
    match crate::auth::create_key(state.control(), &secret, &name, &user, city).await {
        Ok(_) => key_page(&state, &signed, Some(&secret), &[], StatusCode::CREATED).await,
        Err(e) => {
            let lines = problem_lines(e.into());
            key_page(
                &state,
                &signed,
                None,
                &lines,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[handler]
async fn key_revoke(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let signed = require_admin!(&state, request);
    require_csrf!(signed, form.csrf);
    let revoked = api_keys::revoke(state.control(), id).await;
    state.forget_key(id);
    match revoked {
        Ok(Some(_)) => redirect("/console/admin/keys"),
        Ok(None) => error_page(
            signed.lang,
            Some(&signed),
            ApiError::not_found("API key", id),
        ),
        Err(e) => error_page(signed.lang, Some(&signed), e.into()),
    }
}

#[handler]
async fn jobs(state: Data<&AppState>, request: &Request) -> Response {
    let signed = require_admin!(&state, request);
    let lang = signed.lang;
    let stats = match crate::routes::admin::queue_stats(&state).await {
        Ok(s) => s,
        Err(e) => return error_page(lang, Some(&signed), e),
    };
    let mut running = Vec::new();
    let mut failed = Vec::new();
    if let Ok(databases) = state.dbs.all().await {
        for database in databases {
            use entity::status::TaskStatus;
            running.extend(
                tasks::recent_in_status(&database.conn, TaskStatus::Processing, 50)
                    .await
                    .unwrap_or_default(),
            );
            failed.extend(
                tasks::recent_in_status(&database.conn, TaskStatus::Failed, 50)
                    .await
                    .unwrap_or_default(),
            );
        }
    }
    let body = html! {
        h1 { (lang.t("jobs")) }
        h2 { (lang.t("queues")) }
        table #queues {
            thead { tr { th scope="col" { (lang.t("queue")) } th { "pending" } th { "scheduled" } th { "running" } th { "done" } th { "dead" } } }
            tbody {
                @for q in &stats.queues {
                    tr { td { (q.name) } td { (q.pending) } td { (q.scheduled) } td { (q.running) } td { (q.done) } td { (q.dead) } }
                }
            }
        }
        h2 { (lang.t("per_city")) }
        @if stats.cities.is_empty() { p { (lang.t("no_backlog")) } } @else {
            table #per-city {
                thead { tr { th scope="col" { (lang.t("city")) } th { "pending" } th { "processing" } th { (lang.t("oldest")) } } }
                tbody {
                    @for c in &stats.cities {
                        tr { td { (c.city_id) } td { (c.pending) } td { (c.processing) }
                             td { (c.oldest_at.map(|t| in_zone(t, "America/Sao_Paulo", lang)).unwrap_or_default()) } }
                    }
                }
            }
        }
        h2 { (lang.t("running")) }
        (task_table(lang, &signed, &running, false))
        h2 { (lang.t("failed_tasks")) }
        (task_table(lang, &signed, &failed, true))
    };
    admin_page(&signed, lang.t("jobs"), StatusCode::OK, body)
}

fn task_table(
    lang: Lang,
    signed: &Signed,
    rows: &[(entity::search_task::Model, i64)],
    retry: bool,
) -> Markup {
    html! {
        @if rows.is_empty() { p { "—" } } @else {
            table {
                thead { tr { th { "#" } th { (lang.t("searches")) } th { (lang.t("city")) } th { (lang.t("recording")) } th { "attempts" } th { (lang.t("error")) } th { "" } } }
                tbody {
                    @for (t, city) in rows {
                        tr {
                            td { (t.id) }
                            td { a href={ "/console/searches/" (t.search_id) } { (t.search_id) } }
                            td { (city) } td { (t.recording_id) } td { (t.attempts) }
                            td { (t.error.as_deref().unwrap_or("")) }
                            td {
                                @if retry {
                                    form.inline method="post" action={ "/console/searches/" (t.search_id) "/retry" } {
                                        input type="hidden" name="csrf" value=(signed.csrf);
                                        button type="submit" { (lang.t("retry")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
