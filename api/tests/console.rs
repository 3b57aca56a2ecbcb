//! The web console in a real browser: Debian's Chromium driven through chromium-driver over
//! WebDriver (fantoccini), against a real `sentinela-api --standalone --demo` process. Signs in
//! with a city key, creates the demo search from the form, watches the progress reach 100 %,
//! checks the timeline's visits are in time order and the map draws the path, plays a sighting's
//! clip, downloads the CSV, and checks a form without its CSRF token gets 403, a session cannot
//! write through the API, and another city's key gets the not-found page. Screenshots of the main
//! pages go to `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use sentinela_testkit::{KillOnDrop, free_port, workspace_binary};
use serde_json::{Value, json};

const ADMIN: &str = "snt_console_test_admin";

/// A 1x1 PNG: what the test's tile server answers for every tile.
const TILE: [u8; 69] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0,
    0, 0, 144, 119, 83, 222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 56, 113, 105, 31, 0, 4,
    190, 2, 89, 248, 185, 72, 198, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// A map tile server on loopback that counts the tiles it serves.
async fn tile_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use poem::listener::{Acceptor, Listener};
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let app = poem::Route::new().at(
        "/tiles/*path",
        poem::endpoint::make_sync(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            poem::Response::builder()
                .content_type("image/png")
                .body(TILE.to_vec())
        }),
    );
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .map(std::net::SocketAddr::port)
        .unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (port, served)
}

fn screenshots() -> PathBuf {
    let dir = workspace_binary("sentinela-api")
        .parent()
        .unwrap()
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn wait_until<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn browser(driver_port: u16) -> Client {
    // Both rustls providers are linked in (the AWS SDK brings aws-lc-rs); WebDriver is plain HTTP
    // on loopback, any provider does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1100", "--lang=pt-BR",
                "--autoplay-policy=no-user-gesture-required"
            ],
            "prefs": {"intl.accept_languages": "pt-BR"}
        }),
    );
    ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("chromedriver answers")
}

async fn sign_in(browser: &Client, base: &str, key: &str) {
    browser.goto(&format!("{base}/console")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );
    let field = browser.find(Locator::Id("api_key")).await.unwrap();
    field.send_keys(key).await.unwrap();
    click(browser, "main form button[type=submit]").await;
    wait_until("the searches page", 10, || async {
        browser
            .current_url()
            .await
            .is_ok_and(|u| u.path() == "/console/searches")
    })
    .await;
}

/// Signs out with the header's button and waits for the sign-in page.
async fn sign_out(browser: &Client) {
    click(browser, "header form button").await;
    wait_until("the sign-in page", 10, || async {
        browser
            .current_url()
            .await
            .is_ok_and(|u| u.path() == "/console/login")
    })
    .await;
}

/// Runs `js` in the page; `null` when the page is between two documents (a form just posted).
async fn script(browser: &Client, js: &str) -> Value {
    browser.execute(js, vec![]).await.unwrap_or(Value::Null)
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn fetch(browser: &Client, js: &str) -> Value {
    browser.execute_async(js, vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_the_red_bus_in_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (tile_port, tiles_served) = tile_server().await;
    let mut api = Command::new(workspace_binary("sentinela-api"));
    api.args(["--standalone", "--demo"])
        .env(
            "SENTINELA__API__MAP_TILE_URL",
            format!("http://127.0.0.1:{tile_port}/tiles/{{z}}/{{x}}/{{y}}.png"),
        )
        .current_dir(dir.path())
        .envs(sentinela_testkit::process_env(
            &format!("sqlite://{}/console.db?mode=rwc", dir.path().display()),
            &dir.path().join("recordings"),
        ))
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("SENTINELA_ADMIN_KEY", ADMIN)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("api.log")).unwrap());
    let _api = KillOnDrop(api.spawn().unwrap());
    let http = reqwest::Client::new();
    wait_until("the demo API", 180, || async {
        http.get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let key_of = |city: Option<i64>, name: &str| {
        let http = http.clone();
        let base = base.clone();
        let name = name.to_owned();
        async move {
            let (status, created) = sentinela_testkit::call(
                &http,
                &base,
                Some(ADMIN),
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": name, "user_id": name, "city_id": city})),
            )
            .await;
            assert!(status.is_success(), "{created}");
            created["secret"].as_str().unwrap().to_owned()
        }
    };
    let operator = key_of(Some(1), "operadora").await;
    let (_, city_b) = sentinela_testkit::call(
        &http,
        &base,
        Some(ADMIN),
        "POST",
        "/api/v1/cities",
        Some(json!({"name": "Outra Cidade"})),
    )
    .await;
    let other = key_of(city_b["id"].as_i64(), "outra").await;

    let driver_port = free_port();
    let _driver = KillOnDrop(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) is installed"),
    );
    wait_until("chromedriver", 30, || async {
        http.get(format!("http://127.0.0.1:{driver_port}/status"))
            .send()
            .await
            .is_ok()
    })
    .await;
    let browser = browser(driver_port).await;
    let shots = screenshots();

    // Sign in; the console speaks Portuguese.
    browser
        .goto(&format!("{base}/console/login"))
        .await
        .unwrap();
    let html_lang = script(&browser, "return document.documentElement.lang").await;
    assert_eq!(html_lang, "pt-BR");
    std::fs::write(shots.join("login.png"), browser.screenshot().await.unwrap()).unwrap();
    sign_in(&browser, &base, &operator).await;

    // The demo search from the form, in São Paulo time.
    browser
        .find(Locator::LinkText("Nova busca"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("new-search"))
        .await
        .unwrap();
    script(
        &browser,
        "document.getElementById('vehicle_type').value = 'ônibus';
         document.getElementById('color').value = 'vermelho';
         document.getElementById('start').value = '2026-11-29T08:00:00';
         document.getElementById('end').value = '2026-11-29T08:10:00';
         document.getElementById('new-search').dispatchEvent(new Event('change'));",
    )
    .await;
    // The estimate shows before submitting: 12 one-minute recordings of the three cameras.
    wait_until("the estimate", 10, || async {
        script(
            &browser,
            "return document.getElementById('estimate').textContent",
        )
        .await
        .as_str()
        .is_some_and(|t| t.starts_with("12 gravações") && t.contains("US$"))
    })
    .await;
    std::fs::write(
        shots.join("new-search.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();
    click(&browser, "#new-search button[type=submit]").await;
    wait_until("the search page", 10, || async {
        browser.current_url().await.is_ok_and(|u| {
            u.path()
                .strip_prefix("/console/searches/")
                .is_some_and(|id| id.parse::<i64>().is_ok())
        })
    })
    .await;
    let search_url = browser.current_url().await.unwrap();
    let id = search_url.path().rsplit('/').next().unwrap().to_owned();

    // Progress reaches 100 %, then the page shows the trajectory.
    wait_until("100 % and the timeline", 180, || async {
        let text = script(
            &browser,
            "const p = document.getElementById('percent');
             return [p ? p.textContent : '', document.querySelectorAll('#timeline li.visit').length];",
        )
        .await;
        text[0] == "100 %" && text[1].as_u64().unwrap_or(0) > 0
    })
    .await;
    wait_until("the map", 10, || async {
        script(
            &browser,
            "return document.getElementById('map').dataset.drawn || ''",
        )
        .await
            != ""
    })
    .await;
    let visits = script(
        &browser,
        "return Array.from(document.querySelectorAll('#timeline li.visit')).map(li => li.dataset.first);",
    )
    .await;
    let visits: Vec<String> = serde_json::from_value(visits).unwrap();
    assert!(
        visits.len() >= 3,
        "the bus crosses three cameras: {visits:?}"
    );
    let mut sorted = visits.clone();
    sorted.sort();
    assert_eq!(visits, sorted, "visits in time order");
    // With a tile server configured, the map lies on its tiles.
    wait_until("the map's tiles", 10, || async {
        script(
            &browser,
            "return Number(document.getElementById('map').dataset.tilesLoaded || 0)",
        )
        .await
        .as_u64()
        .unwrap_or(0)
            > 0
    })
    .await;
    assert!(tiles_served.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let drawn = script(
        &browser,
        "return document.getElementById('map').dataset.drawn",
    )
    .await;
    assert_eq!(
        drawn.as_str().unwrap().parse::<usize>().unwrap(),
        visits.len() - 1,
        "a path segment between each two visits"
    );
    let first_visit = script(
        &browser,
        "return document.querySelector('#timeline li.visit a').textContent",
    )
    .await;
    assert!(
        first_visit.as_str().unwrap().contains("29/11/2026 08:00"),
        "times in the city's zone, Brazilian format: {first_visit}"
    );
    std::fs::write(
        shots.join("search.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();
    let map = browser.find(Locator::Id("map")).await.unwrap();
    std::fs::write(shots.join("map.png"), map.screenshot().await.unwrap()).unwrap();

    // The CSV downloads with the session (no key in the URL).
    let csv = fetch(
        &browser,
        "const done = arguments[arguments.length - 1];
         const a = document.getElementById('export-csv');
         fetch(a.href).then(r => r.text().then(t => done([r.status, r.headers.get('content-disposition'), t])));",
    )
    .await;
    assert_eq!(csv[0], 200, "{csv}");
    assert!(csv[1].as_str().unwrap().starts_with("attachment"), "{csv}");
    assert!(csv[2].as_str().unwrap().lines().count() > 3, "{csv}");

    // A form posted without its CSRF token is refused; a session cannot write through the API.
    let refused = fetch(
        &browser,
        "const done = arguments[arguments.length - 1];
         fetch('/console/searches', {method: 'POST',
           headers: {'content-type': 'application/x-www-form-urlencoded'},
           body: 'city_id=1&vehicle_type=carro&start=2026-11-29T08:00&end=2026-11-29T08:10'})
         .then(r => done(r.status));",
    )
    .await;
    assert_eq!(refused, 403);
    let write = fetch(
        &browser,
        &format!(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/searches/{id}/cancel', {{method: 'POST'}}).then(r => done(r.status));"
        ),
    )
    .await;
    assert_eq!(write, 401, "the session cookie only reads through the API");

    // A sighting: the boxed snapshot and its clip, which plays.
    click(&browser, "#timeline li.visit a").await;
    wait_until("the clip to load", 60, || async {
        script(
            &browser,
            "const v = document.getElementById('clip'); return v ? v.readyState : 0;",
        )
        .await
        .as_u64()
        .unwrap_or(0)
            >= 2
    })
    .await;
    let image = script(
        &browser,
        "const i = document.getElementById('snapshot'); return i.complete && i.naturalWidth;",
    )
    .await;
    assert!(
        image.as_u64().unwrap_or(0) > 0,
        "the snapshot loads: {image}"
    );
    std::fs::write(
        shots.join("sighting.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();

    // English on request.
    browser
        .find(Locator::LinkText("English"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until("the English page", 10, || async {
        script(&browser, "return document.documentElement.lang").await == "en"
    })
    .await;

    // Sign out; another city's key gets the not-found page for this search.
    sign_out(&browser).await;
    sign_in(&browser, &base, &other).await;
    browser.goto(search_url.as_str()).await.unwrap();
    let heading = script(
        &browser,
        "return document.querySelector('main h1').textContent",
    )
    .await;
    assert_eq!(heading, "Not found", "another city's search is not there");
    let status = fetch(
        &browser,
        "const done = arguments[arguments.length - 1];
         fetch(window.location.href).then(r => done(r.status));",
    )
    .await;
    assert_eq!(status, 404, "and answers 404");
    let anonymous = http.get(search_url.as_str()).send().await.unwrap();
    assert_eq!(
        anonymous.url().path(),
        "/console/login",
        "without a session the console sends to sign-in"
    );

    // An administrator adds a camera and a key (its secret shown once, and it works).
    browser
        .goto(&format!("{base}/console/searches"))
        .await
        .unwrap();
    sign_out(&browser).await;
    sign_in(&browser, &base, ADMIN).await;
    browser
        .goto(&format!("{base}/console/lang/pt"))
        .await
        .unwrap();
    browser
        .goto(&format!("{base}/console/admin/cameras"))
        .await
        .unwrap();
    type_into(&browser, "cam_name", "Câmera nova").await;
    script(
        &browser,
        "document.getElementById('cam_lat').value = '-23.55';
         document.getElementById('cam_lon').value = '-46.64';",
    )
    .await;
    click(&browser, "#add-camera button[type=submit]").await;
    wait_until("the new camera in the list", 10, || async {
        script(
            &browser,
            "const t = document.getElementById('cameras'); return t ? t.textContent : '';",
        )
        .await
        .as_str()
        .is_some_and(|t| t.contains("Câmera nova") && t.contains("-23.55000, -46.64000"))
    })
    .await;
    // Its coordinates corrected in place.
    script(
        &browser,
        "const row = Array.from(document.querySelectorAll('#cameras tbody tr'))
           .find(r => r.textContent.includes('Câmera nova'));
         const f = row.querySelector('form.coords');
         f.elements['latitude'].value = '-23.56';
         f.submit();",
    )
    .await;
    wait_until("the corrected coordinates", 10, || async {
        script(
            &browser,
            "const t = document.getElementById('cameras'); return t ? t.textContent : '';",
        )
        .await
        .as_str()
        .is_some_and(|t| t.contains("-23.56000, -46.64000"))
    })
    .await;
    std::fs::write(
        shots.join("admin-cameras.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();
    browser
        .goto(&format!("{base}/console/admin/keys"))
        .await
        .unwrap();
    type_into(&browser, "key_name", "turno da noite").await;
    type_into(&browser, "key_user", "joao").await;
    click(&browser, "#new-key button[type=submit]").await;
    let secret = browser
        .wait()
        .for_element(Locator::Id("new-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.starts_with("snt_"), "{secret}");
    let (status, _) =
        sentinela_testkit::call(&http, &base, Some(&secret), "GET", "/api/v1/cities", None).await;
    assert!(status.is_success(), "the new key works");
    browser.refresh().await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(!page.contains(&secret), "the secret is shown once");
    browser
        .goto(&format!("{base}/console/admin/jobs"))
        .await
        .unwrap();
    let queues = script(
        &browser,
        "return document.querySelectorAll('#queues tbody tr').length",
    )
    .await;
    assert_eq!(queues, 3, "every queue listed");
    std::fs::write(
        shots.join("admin-jobs.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();
    browser.close().await.unwrap();
}
