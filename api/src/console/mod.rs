//! The web console at `/console`: server-rendered pages (maud, checked at compile time) for city
//! operators, in Brazilian Portuguese first. Sign-in with an API key opens a server-side session
//! (an HttpOnly, SameSite=Strict cookie, `Secure` behind TLS; idle and absolute expiry); every form
//! carries the session's CSRF token; a city key sees only its city. The pages' images, clips,
//! exports and live progress are the API's read operations, authenticated by the session cookie
//! (see [`crate::auth::session_reads`]) — no key in any URL. Every asset is served by the binary.

mod admin;
pub mod i18n;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use maud::{DOCTYPE, Markup, html};
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Path, Query};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler, post};
use rand::RngCore;
use sentinela_core::repo::{api_keys, cameras, cities, searches, sessions};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{ApiKeyAuth, Principal, SESSION_COOKIE, cookie, principal_of};
use crate::error::ApiError;
use crate::routes::searches::{
    CreateSearch, cancel_search, create_search, estimate_search, list_searches, visible_search,
};
use i18n::Lang;

const LOGIN_COOKIE: &str = "sentinela_login";
const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

/// The console's routes, to nest at `/console`; `tiles` is the map's tile server, if any (its
/// origin is the one image source beside the console itself).
pub fn routes(tiles: Option<&str>) -> impl Endpoint + use<> {
    let tile_origin = tiles
        .and_then(|u| {
            let rest = u.split_once("://")?.1;
            let host = rest.split('/').next()?;
            Some(format!(" {}://{host}", u.split_once("://")?.0))
        })
        .unwrap_or_default();
    let policy = format!(
        "default-src 'self'; img-src 'self' data:{tile_origin}; media-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    );
    Route::new()
        .at("/", get(home))
        .at("/login", get(login_page).post(login))
        .at("/logout", post(logout))
        .at("/lang/:to", get(switch_lang))
        .at("/searches", get(search_list).post(search_create))
        .at("/searches/new", get(search_form))
        .at("/searches/estimate", post(search_estimate))
        .at("/searches/:id", get(search_page))
        .at("/searches/:id/cancel", post(search_cancel))
        .at("/searches/:id/retry", post(search_retry))
        .at("/searches/:id/sightings/:sighting", get(sighting_page))
        .at("/assets/console.css", get(css))
        .at("/assets/console.js", get(js))
        .nest("/admin", admin::routes())
        .with(
            poem::middleware::SetHeader::new()
                .overriding(header::X_FRAME_OPTIONS, "DENY")
                .overriding(header::CACHE_CONTROL, "no-store")
                .overriding("Content-Security-Policy", policy),
        )
}

/// A signed-in browser.
struct Signed {
    principal: Principal,
    csrf: String,
    lang: Lang,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether the browser reached us over TLS (directly or through the proxy).
fn over_tls(request: &Request) -> bool {
    request.uri().scheme_str() == Some("https")
        || request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(request: &Request, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = if over_tls(request) { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .finish()
}

fn page(lang: Lang, signed: Option<&Signed>, title: &str, body: Markup) -> Markup {
    let (other, other_name) = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sentinela" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { (lang.t("skip")) }
                header {
                    nav aria-label="Sentinela" {
                        a.brand href="/console/searches" { "Sentinela" }
                        @if let Some(s) = signed {
                            a href="/console/searches" { (lang.t("searches")) }
                            a href="/console/searches/new" { (lang.t("new_search")) }
                            @if s.principal.is_admin() {
                                a href="/console/admin/cities" { (lang.t("cities")) }
                                a href="/console/admin/cameras" { (lang.t("cameras")) }
                                a href="/console/admin/keys" { (lang.t("keys")) }
                                a href="/console/admin/jobs" { (lang.t("jobs")) }
                            }
                            span.who { (s.principal.user_id) }
                            form.inline method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { (lang.t("sign_out")) }
                            }
                        }
                        a lang=(other) href={ "/console/lang/" (other) } { (other_name) }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

fn not_found(lang: Lang, signed: Option<&Signed>) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        page(
            lang,
            signed,
            lang.t("not_found"),
            html! { h1 { (lang.t("not_found")) } p { (lang.t("not_found_help")) } },
        ),
    )
}

fn forbidden(lang: Lang, signed: Option<&Signed>) -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        page(
            lang,
            signed,
            lang.t("forbidden"),
            html! { h1 { (lang.t("forbidden")) } p { (lang.t("csrf")) } },
        ),
    )
}

/// An API error as a page: 404s (another city's objects included) look alike; others say why.
fn error_page(lang: Lang, signed: Option<&Signed>, error: ApiError) -> Response {
    if matches!(error, ApiError::NotFound(_)) {
        return not_found(lang, signed);
    }
    let response = error.into_response();
    let status = response.status();
    html_response(
        status,
        page(
            lang,
            signed,
            "Erro",
            html! { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } },
        ),
    )
}

/// The session of this browser, if it is signed in with a key that still works.
async fn signed_in(state: &AppState, request: &Request) -> Result<Option<Signed>, ApiError> {
    let Some(token) = cookie(request, SESSION_COOKIE) else {
        return Ok(None);
    };
    let now = Utc::now();
    let Some(session) = sessions::find(state.control(), &token, now).await? else {
        return Ok(None);
    };
    let key = api_keys::get(state.control(), session.api_key_id).await?;
    match principal_of(state, key, now).await {
        Ok(principal) => Ok(Some(Signed {
            principal,
            csrf: session.csrf,
            lang: Lang::of(request),
        })),
        Err(ApiError::Unauthorized(_)) => {
            sessions::end(state.control(), &token).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Runs `f` for a signed-in browser; others go to the sign-in page.
macro_rules! require_session {
    ($state:expr, $request:expr) => {
        match signed_in($state, $request).await {
            Ok(Some(signed)) => signed,
            Ok(None) => return redirect("/console/login"),
            Err(e) => return error_page(Lang::of($request), None, e),
        }
    };
}

/// Whether a posted form carries the session's CSRF token (compared in constant time).
fn csrf_ok(signed: &Signed, sent: &str) -> bool {
    let (a, b) = (signed.csrf.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[handler]
async fn home(state: Data<&AppState>, request: &Request) -> Response {
    match signed_in(&state, request).await {
        Ok(Some(_)) => redirect("/console/searches"),
        _ => redirect("/console/login"),
    }
}

#[handler]
fn css() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(CSS)
}

#[handler]
fn js() -> Response {
    Response::builder()
        .content_type("text/javascript; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(JS)
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

#[handler]
fn switch_lang(request: &Request, Path(to): Path<String>, Query(back): Query<Back>) -> Response {
    let to = if to == "en" { "en" } else { "pt" };
    // Only back into the console: no open redirect.
    let back = back
        .back
        .filter(|b| b.starts_with("/console/") && !b.starts_with("/console//"))
        .or_else(|| {
            request
                .headers()
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.find("/console/").map(|i| r[i..].to_owned()))
        })
        .unwrap_or_else(|| "/console/searches".into());
    let mut response = redirect(&back);
    if let Ok(value) = set_cookie(request, "lang", to, "/console", 365 * 86_400).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn login_markup(lang: Lang, csrf: &str, error: Option<&str>) -> Markup {
    page(
        lang,
        None,
        lang.t("sign_in"),
        html! {
            h1 { (lang.t("sign_in")) }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="api_key" { (lang.t("api_key")) }
                input #api_key type="password" name="api_key" autocomplete="current-password"
                    required autofocus aria-describedby="api_key_help";
                p #api_key_help .help { (lang.t("sign_in_help")) }
                button type="submit" { (lang.t("sign_in")) }
            }
        },
    )
}

/// The sign-in page; its form's token is a cookie of its own (the browser has no session yet).
#[handler]
async fn login_page(state: Data<&AppState>, request: &Request) -> Response {
    if let Ok(Some(_)) = signed_in(&state, request).await {
        return redirect("/console/searches");
    }
    let lang = Lang::of(request);
    let csrf = random_token();
    let mut response = html_response(StatusCode::OK, login_markup(lang, &csrf, None));
    if let Ok(value) = set_cookie(request, LOGIN_COOKIE, &csrf, "/console/login", 3600).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct LoginForm {
    api_key: String,
    csrf: String,
}

#[handler]
async fn login(state: Data<&AppState>, request: &Request, Form(form): Form<LoginForm>) -> Response {
    let lang = Lang::of(request);
    let expected = cookie(request, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || expected != form.csrf {
        return forbidden(lang, None);
    }
    let now = Utc::now();
    let key = match api_keys::find_key(state.control(), form.api_key.trim()).await {
        Ok(key) => key,
        Err(e) => return error_page(lang, None, e.into()),
    };
    let principal = match principal_of(&state, key, now).await {
        Ok(p) => p,
        Err(ApiError::Unauthorized(_)) => {
            return html_response(
                StatusCode::UNAUTHORIZED,
                login_markup(lang, &expected, Some(lang.t("bad_key"))),
            );
        }
        Err(e) => return error_page(lang, None, e),
    };
    let token = random_token();
    if let Err(e) = sessions::create(
        state.control(),
        &token,
        principal.key_id,
        &random_token(),
        now,
    )
    .await
    {
        return error_page(lang, None, e.into());
    }
    let mut response = redirect("/console/searches");
    let max_age = sessions::LIFETIME.num_seconds();
    for cookie in [
        set_cookie(request, SESSION_COOKIE, &token, "/", max_age),
        set_cookie(request, LOGIN_COOKIE, "", "/console/login", 0),
    ] {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

#[handler]
async fn logout(state: Data<&AppState>, request: &Request, Form(form): Form<CsrfForm>) -> Response {
    let signed = require_session!(&state, request);
    if !csrf_ok(&signed, form.csrf.as_deref().unwrap_or_default()) {
        return forbidden(signed.lang, Some(&signed));
    }
    if let Some(token) = cookie(request, SESSION_COOKIE) {
        sessions::end(state.control(), &token).await.ok();
    }
    let mut response = redirect("/console/login");
    if let Ok(value) = set_cookie(request, SESSION_COOKIE, "", "/", 0).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn status_label(lang: Lang, status: &str) -> &'static str {
    lang.t(status)
}

fn in_zone(at: DateTime<Utc>, timezone: &str, lang: Lang) -> String {
    let format = match lang {
        Lang::Pt => "%d/%m/%Y %H:%M:%S",
        Lang::En => "%Y-%m-%d %H:%M:%S",
    };
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => at.with_timezone(&tz).format(format).to_string(),
        Err(_) => at.format(format).to_string() + " UTC",
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

#[handler]
async fn search_list(
    state: Data<&AppState>,
    request: &Request,
    Query(q): Query<ListQuery>,
) -> Response {
    let signed = require_session!(&state, request);
    let lang = signed.lang;
    let auth = ApiKeyAuth(signed.principal.clone());
    let status = q.status.as_deref().and_then(|s| {
        sentinela_core::SearchStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
    });
    let filter = searches::SearchFilter {
        city: auth.0.city_scope(),
        status,
        created_after: None,
        created_before: None,
        plate: None,
        user_id: None,
    };
    let rows = match list_searches(&state, &auth, None, &filter, 50, None).await {
        Ok((_, rows)) => rows,
        Err(e) => return error_page(lang, Some(&signed), e),
    };
    let zones = city_zones(&state).await;
    let body = html! {
        h1 { (lang.t("searches")) }
        p { a.button href="/console/searches/new" { (lang.t("new_search")) } }
        form.filters method="get" action="/console/searches" {
            label for="status" { (lang.t("status")) }
            select #status name="status" {
                option value="" { (lang.t("all")) }
                @for s in sentinela_core::SearchStatus::ALL {
                    option value=(s.as_str()) selected[Some(s) == status] { (status_label(lang, s.as_str())) }
                }
            }
            button type="submit" { (lang.t("filter")) }
        }
        @if rows.is_empty() {
            p { (lang.t("no_searches")) }
        } @else {
            table #searches {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.t("criteria")) }
                    th scope="col" { (lang.t("status")) }
                    th scope="col" { (lang.t("progress")) }
                    th scope="col" { (lang.t("created")) }
                } }
                tbody {
                    @for s in &rows {
                        @let zone = zones.get(&s.city_id).map_or("UTC", String::as_str);
                        tr {
                            td { a href={ "/console/searches/" (s.id) } { (s.id) } }
                            td { (criteria(lang, s)) }
                            td { (status_label(lang, s.status.as_str())) }
                            td { (percent(s)) " %" }
                            td { (in_zone(s.created_at, zone, lang)) }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(lang, Some(&signed), lang.t("searches"), body),
    )
}

fn criteria(lang: Lang, s: &entity::vehicle_search::Model) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(s.plate.clone());
    parts.extend(s.vehicle_type.as_deref().map(|t| i18n::word(lang, t)));
    parts.extend(s.color.as_deref().map(|c| i18n::word(lang, c)));
    parts.join(" · ")
}

fn percent(s: &entity::vehicle_search::Model) -> i64 {
    if s.status.is_final() {
        return 100;
    }
    let done = i64::from(s.tasks_done) + i64::from(s.tasks_failed);
    (done * 100)
        .checked_div(i64::from(s.tasks_total))
        .unwrap_or(0)
}

async fn city_zones(state: &AppState) -> std::collections::HashMap<i64, String> {
    cities::list(state.control())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.id, c.timezone))
        .collect()
}

/// The new-search form (read from its pairs: `camera_ids` repeats).
#[derive(Debug, Default)]
struct SearchForm {
    csrf: Option<String>,
    city_id: Option<String>,
    plate: Option<String>,
    color: Option<String>,
    vehicle_type: Option<String>,
    start: Option<String>,
    end: Option<String>,
    camera_ids: Vec<String>,
}

impl SearchForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = Self::default();
        for (key, value) in pairs {
            let slot = match key.as_str() {
                "csrf" => &mut form.csrf,
                "city_id" => &mut form.city_id,
                "plate" => &mut form.plate,
                "color" => &mut form.color,
                "vehicle_type" => &mut form.vehicle_type,
                "start" => &mut form.start,
                "end" => &mut form.end,
                "camera_ids" => {
                    form.camera_ids.push(value);
                    continue;
                }
                _ => continue,
            };
            *slot = Some(value);
        }
        form
    }
}

/// The search a form asks for, or what is wrong with it.
async fn search_body(
    state: &AppState,
    signed: &Signed,
    form: &SearchForm,
) -> Result<CreateSearch, Vec<(String, String)>> {
    let lang = signed.lang;
    let mut errors: Vec<(String, String)> = Vec::new();
    let city = match form.city_id.as_deref().and_then(|c| c.parse::<i64>().ok()) {
        Some(id) => cities::get(state.control(), id)
            .await
            .ok()
            .flatten()
            .filter(|c| signed.principal.sees_city(c.id)),
        None => None,
    };
    let zone: chrono_tz::Tz = city
        .as_ref()
        .and_then(|c| c.timezone.parse().ok())
        .unwrap_or(chrono_tz::America::Sao_Paulo);
    if city.is_none() {
        errors.push((lang.t("city").into(), "?".into()));
    }
    let start = form.start.as_deref().and_then(|v| local_time(v, zone));
    let end = form.end.as_deref().and_then(|v| local_time(v, zone));
    if start.is_none() {
        errors.push((lang.t("start").into(), "?".into()));
    }
    if end.is_none() {
        errors.push((lang.t("end").into(), "?".into()));
    }
    let cameras: Vec<i64> = form
        .camera_ids
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    match (city, start, end) {
        (Some(city), Some(start), Some(end)) if errors.is_empty() => Ok(CreateSearch {
            city_id: city.id,
            plate: given(&form.plate),
            color: given(&form.color),
            vehicle_type: given(&form.vehicle_type),
            start_date: start,
            end_date: end,
            camera_ids: (!cameras.is_empty()).then_some(cameras),
            webhook_url: None,
            webhook_secret: None,
        }),
        _ => Err(errors),
    }
}

async fn form_markup(
    state: &AppState,
    signed: &Signed,
    form: &SearchForm,
    errors: &[(String, String)],
) -> Markup {
    let lang = signed.lang;
    let visible: Vec<_> = cities::list(state.control())
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| signed.principal.sees_city(c.id))
        .collect();
    // Sensible defaults: today from 00:00 until now, in the first city's time zone.
    let zone: chrono_tz::Tz = visible
        .first()
        .and_then(|c| c.timezone.parse().ok())
        .unwrap_or(chrono_tz::America::Sao_Paulo);
    let now = Utc::now().with_timezone(&zone);
    let default_end = now.format("%Y-%m-%dT%H:%M").to_string();
    let default_start = now.format("%Y-%m-%dT00:00").to_string();
    let chosen = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    let mut cameras_by_city: Vec<(String, Vec<entity::camera::Model>)> = Vec::new();
    for c in &visible {
        if let Ok(db) = state.city_db(c.id).await {
            let cams = cameras::list_by_city(&db, c.id).await.unwrap_or_default();
            if !cams.is_empty() {
                cameras_by_city.push((c.name.clone(), cams));
            }
        }
    }
    html! {
        h1 { (lang.t("new_search")) }
        @if !errors.is_empty() {
            div.error role="alert" {
                p { (lang.t("errors")) }
                ul { @for (field, message) in errors { li { strong { (field) } ": " (message) } } }
            }
        }
        form #new-search method="post" action="/console/searches" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label for="city_id" { (lang.t("city")) }
            select #city_id name="city_id" required {
                @for c in &visible {
                    option value=(c.id) selected[chosen(&form.city_id, &c.id.to_string())] { (c.name) }
                }
            }
            label for="plate" { (lang.t("plate")) }
            input #plate name="plate" maxlength="16" value=(form.plate.clone().unwrap_or_default())
                aria-describedby="plate_help" autocomplete="off";
            p #plate_help .help { (lang.t("plate_help")) }
            label for="color" { (lang.t("color")) }
            select #color name="color" {
                option value="" { (lang.t("any")) }
                @for (value, pt, en) in i18n::COLORS {
                    option value=(value) selected[chosen(&form.color, value)] { (if lang == Lang::Pt { pt } else { en }) }
                }
            }
            label for="vehicle_type" { (lang.t("vehicle_type")) }
            select #vehicle_type name="vehicle_type" {
                option value="" { (lang.t("any")) }
                @for (value, pt, en) in i18n::VEHICLE_TYPES {
                    option value=(value) selected[chosen(&form.vehicle_type, value)] { (if lang == Lang::Pt { pt } else { en }) }
                }
            }
            label for="start" { (lang.t("start")) }
            input #start type="datetime-local" name="start" step="1" required
                value=(form.start.clone().unwrap_or(default_start)) aria-describedby="window_help";
            label for="end" { (lang.t("end")) }
            input #end type="datetime-local" name="end" step="1" required
                value=(form.end.clone().unwrap_or(default_end)) aria-describedby="window_help";
            p #window_help .help { (lang.t("window_help")) }
            label for="camera_ids" { (lang.t("cameras")) }
            select #camera_ids name="camera_ids" multiple size="5" aria-describedby="cameras_help" {
                @for (city, cams) in &cameras_by_city {
                    optgroup label=(city) {
                        @for c in cams {
                            option value=(c.id) selected[form.camera_ids.contains(&c.id.to_string())] { (c.name) }
                        }
                    }
                }
            }
            p #cameras_help .help { (lang.t("cameras_help")) }
            p #estimate .estimate aria-live="polite" {}
            button type="submit" { (lang.t("search")) }
        }
    }
}

#[handler]
async fn search_form(state: Data<&AppState>, request: &Request) -> Response {
    let signed = require_session!(&state, request);
    let markup = form_markup(&state, &signed, &SearchForm::default(), &[]).await;
    html_response(
        StatusCode::OK,
        page(
            signed.lang,
            Some(&signed),
            signed.lang.t("new_search"),
            markup,
        ),
    )
}

/// A `datetime-local` value (`2026-11-29T08:00` or with seconds) in `timezone`, as UTC.
fn local_time(value: &str, timezone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M"))
        .ok()?;
    timezone
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[handler]
async fn search_create(
    state: Data<&AppState>,
    request: &Request,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let signed = require_session!(&state, request);
    let lang = signed.lang;
    let form = SearchForm::from_pairs(pairs);
    if !csrf_ok(&signed, form.csrf.as_deref().unwrap_or_default()) {
        return forbidden(lang, Some(&signed));
    }
    let errors = match search_body(&state, &signed, &form).await {
        Ok(body) => {
            match create_search(&state, &ApiKeyAuth(signed.principal.clone()), body).await {
                Ok(search) => return redirect(&format!("/console/searches/{}", search.id)),
                Err(e) => problem_lines(e),
            }
        }
        Err(errors) => errors,
    };
    let markup = form_markup(&state, &signed, &form, &errors).await;
    html_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        page(lang, Some(&signed), lang.t("new_search"), markup),
    )
}

/// What the form's search would cost, as JSON for the form's live estimate.
#[handler]
async fn search_estimate(
    state: Data<&AppState>,
    request: &Request,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let signed = match signed_in(&state, request).await {
        Ok(Some(signed)) => signed,
        _ => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let form = SearchForm::from_pairs(pairs);
    if !csrf_ok(&signed, form.csrf.as_deref().unwrap_or_default()) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let lang = signed.lang;
    let answer = match search_body(&state, &signed, &form).await {
        Ok(body) => {
            match estimate_search(&state, &ApiKeyAuth(signed.principal.clone()), body).await {
                Ok(a) => {
                    let text = format!(
                        "{} {} · {} {} · ~{} {} · US$ {:.2}{}",
                        a.estimate.recordings,
                        lang.t("recordings").to_lowercase(),
                        a.estimate.frames,
                        lang.t("frames"),
                        a.estimate.detector_calls,
                        lang.t("calls"),
                        a.estimate.cost_usd,
                        if a.within_caps {
                            ""
                        } else {
                            lang.t("over_cap")
                        },
                    );
                    serde_json::json!({"ok": a.within_caps, "text": text})
                }
                Err(e) => serde_json::json!({"ok": false, "text": problem_lines(e)
                    .into_iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; ")}),
            }
        }
        Err(_) => serde_json::json!({"ok": false, "text": ""}),
    };
    Response::builder()
        .content_type("application/json")
        .body(answer.to_string())
}

/// What an API error says, field by field, for the form.
fn problem_lines(error: ApiError) -> Vec<(String, String)> {
    let problem = error.problem();
    match &problem.errors {
        Some(errors) => errors
            .iter()
            .map(|e| (e.field.clone(), e.detail.clone()))
            .collect(),
        None => vec![(
            problem.field.clone().unwrap_or_default(),
            problem.detail.clone(),
        )],
    }
}

/// A city's IANA time zone name (`UTC` when the city cannot be read).
async fn city_zone(state: &AppState, city_id: i64) -> String {
    cities::get(state.control(), city_id)
        .await
        .ok()
        .flatten()
        .map_or_else(|| "UTC".to_owned(), |c| c.timezone)
}

#[handler]
async fn search_page(state: Data<&AppState>, request: &Request, Path(id): Path<i64>) -> Response {
    let signed = require_session!(&state, request);
    let lang = signed.lang;
    let auth = ApiKeyAuth(signed.principal.clone());
    let (search, db) = match visible_search(&state, &auth, id).await {
        Ok(found) => found,
        Err(e) => return error_page(lang, Some(&signed), e),
    };
    let zone = city_zone(&state, search.city_id).await;
    let cams = cameras::list_by_city(&db, search.city_id)
        .await
        .unwrap_or_default();
    let cams_json = serde_json::Value::Array(
        cams.iter()
            .filter_map(|c| {
                Some(serde_json::json!({
                    "id": c.id, "name": c.name, "lat": c.latitude?, "lon": c.longitude?,
                }))
            })
            .collect(),
    );
    let live = !search.status.is_final();
    let total = search.tasks_total.max(1);
    let done = search.tasks_done + search.tasks_failed;
    let words = serde_json::json!({
        "sightings": lang.t("sightings"),
        "not_seen": lang.t("not_seen"),
        "camera": lang.t("camera"),
    });
    let body = html! {
        h1 { (lang.t("search_n")) " #" (search.id) }
        p.criteria { (criteria(lang, &search)) " · " (in_zone(search.start_date, &zone, lang)) " → " (in_zone(search.end_date, &zone, lang)) }
        section #search data-search-id=(search.id) data-live=(live) data-status=(search.status.as_str()) {
            h2 { (lang.t("progress")) }
            p { (lang.t("status")) ": " span #status { (status_label(lang, search.status.as_str())) } }
            progress #progress max=(total) value=(if live { done } else { total })
                aria-labelledby="percent" {}
            span #percent { (percent(&search)) " %" }
            p.counts {
                span #frames { (search.frames_analyzed) } " " (lang.t("frames")) " · "
                span #calls { (search.detector_calls) } " " (lang.t("calls"))
            }
            @if let Some(error) = &search.error_message { p.error { (error) } }
            div.actions {
                @if live {
                    form.inline method="post" action={ "/console/searches/" (search.id) "/cancel" } {
                        input type="hidden" name="csrf" value=(signed.csrf);
                        button type="submit" { (lang.t("cancel")) }
                    }
                }
                @if search.tasks_failed > 0 && !live {
                    form.inline method="post" action={ "/console/searches/" (search.id) "/retry" } {
                        input type="hidden" name="csrf" value=(signed.csrf);
                        button type="submit" { (lang.t("retry")) }
                    }
                }
                a.button #export-csv href={ "/api/v1/searches/" (search.id) "/export.csv" } download { (lang.t("export_csv")) }
                a.button #export-geojson href={ "/api/v1/searches/" (search.id) "/export.geojson" } download { (lang.t("export_geojson")) }
            }
        }
        @if !live {
            section #trajectory data-search-id=(search.id) data-timezone=(zone)
                data-lang=(lang.code()) data-words=(words.to_string()) {
                h2 { (lang.t("timeline")) }
                ol #timeline aria-live="polite" { li { (lang.t("loading")) } }
                h2 { (lang.t("map")) }
                p.help { (lang.t("map_help")) }
                canvas #map width="720" height="420" role="img" aria-label=(lang.t("map"))
                    data-cameras=(cams_json.to_string())
                    data-tiles=(state.map_tile_url.clone().unwrap_or_default()) {}
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(lang, Some(&signed), lang.t("trajectory"), body),
    )
}

#[handler]
async fn search_cancel(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = require_session!(&state, request);
    if !csrf_ok(&signed, form.csrf.as_deref().unwrap_or_default()) {
        return forbidden(signed.lang, Some(&signed));
    }
    match cancel_search(&state, &ApiKeyAuth(signed.principal.clone()), id).await {
        Ok(_) | Err(ApiError::Conflict(_)) => redirect(&format!("/console/searches/{id}")),
        Err(e) => error_page(signed.lang, Some(&signed), e),
    }
}

#[handler]
async fn search_retry(
    state: Data<&AppState>,
    request: &Request,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = require_session!(&state, request);
    if !csrf_ok(&signed, form.csrf.as_deref().unwrap_or_default()) {
        return forbidden(signed.lang, Some(&signed));
    }
    let auth = ApiKeyAuth(signed.principal.clone());
    match crate::routes::evidence::retry_search(&state, &auth, id).await {
        Ok(_) | Err(ApiError::Conflict(_)) => redirect(&format!("/console/searches/{id}")),
        Err(e) => error_page(signed.lang, Some(&signed), e),
    }
}

#[handler]
async fn sighting_page(
    state: Data<&AppState>,
    request: &Request,
    Path((id, sighting)): Path<(i64, i64)>,
) -> Response {
    let signed = require_session!(&state, request);
    let lang = signed.lang;
    let auth = ApiKeyAuth(signed.principal.clone());
    let (search, db, point) =
        match crate::routes::evidence::sighting(&state, &auth, id, sighting).await {
            Ok(found) => found,
            Err(e) => return error_page(lang, Some(&signed), e),
        };
    let zone = city_zone(&state, search.city_id).await;
    let camera = cameras::get(&db, point.camera_id).await.ok().flatten();
    let base = format!("/api/v1/searches/{}/sightings/{}", search.id, point.id);
    let body = html! {
        p { a href={ "/console/searches/" (search.id) } { "← " (lang.t("back")) } }
        h1 { (lang.t("sighting")) " #" (point.id) }
        dl {
            dt { (lang.t("camera")) } dd { (camera.as_ref().map_or("-", |c| c.name.as_str())) }
            dt { (lang.t("when")) } dd { (in_zone(point.timestamp, &zone, lang)) }
            dt { (lang.t("confidence")) } dd { (format!("{:.0} %", point.confidence * 100.0)) }
            @if let Some(plate) = &point.plate_text { dt { (lang.t("plate")) } dd { (plate) } }
            @if let Some(color) = &point.color { dt { (lang.t("color")) } dd { (i18n::word(lang, color)) } }
        }
        figure {
            img #snapshot src={ (base) "/image" } alt=(lang.t("snapshot"));
            figcaption { (lang.t("snapshot")) }
        }
        figure {
            video #clip controls preload="auto" src={ (base) "/clip" } {}
            figcaption { (lang.t("clip")) }
        }
    };
    html_response(
        StatusCode::OK,
        page(lang, Some(&signed), lang.t("sighting"), body),
    )
}
