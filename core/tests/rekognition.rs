//! The Rekognition provider with the real `aws-sdk-rekognition` client against a loopback server
//! that speaks the AWS JSON 1.1 protocol (`X-Amz-Target`, JSON bodies, `{"__type": …}` errors).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_rekognition::config::{BehaviorVersion, Credentials, Region};
use opencv::core::{Mat, Scalar};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler, http::StatusCode, post};
use sentinela_core::detect::rekognition::RekognitionDetector;
use sentinela_core::detect::{DetectError, Detector, FrameImage};
use sentinela_core::domain::{Color, VehicleType};
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    calls: AtomicU64,
    /// Throttle every n-th call (0: never).
    throttle_every: u64,
    /// Answer every call with this error type.
    fail_with: Option<&'static str>,
    /// Answer this many calls first with an HTTP 500 `InternalServerError` (a blip).
    blips: AtomicU64,
    bad_requests: std::sync::Mutex<Vec<String>>,
}

fn labels_answer() -> Value {
    json!({
        "LabelModelVersion": "3.0",
        "Labels": [
            {"Name": "Bus", "Confidence": 97.5, "Parents": [{"Name": "Vehicle"}], "Categories": [],
             "Instances": [{
                "Confidence": 96.0,
                "BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.1, "Top": 0.2},
                "DominantColors": [
                    {"Red": 200, "Green": 20, "Blue": 20, "HexCode": "#C81414", "CSSColor": "firebrick",
                     "SimplifiedColor": "red", "PixelPercent": 61.0},
                    {"Red": 20, "Green": 20, "Blue": 20, "HexCode": "#141414", "CSSColor": "black",
                     "SimplifiedColor": "black", "PixelPercent": 22.0}
                ]}]},
            {"Name": "Car", "Confidence": 88.0, "Parents": [{"Name": "Vehicle"}], "Categories": [],
             "Instances": [{
                "Confidence": 88.0,
                "BoundingBox": {"Width": 0.2, "Height": 0.15, "Left": 0.7, "Top": 0.6},
                "DominantColors": [
                    {"Red": 20, "Green": 40, "Blue": 200, "HexCode": "#1428C8", "CSSColor": "mediumblue",
                     "SimplifiedColor": "blue", "PixelPercent": 70.0}
                ]}]},
            {"Name": "Road", "Confidence": 90.0, "Parents": [], "Categories": [], "Instances": []}
        ]
    })
}

fn text_answer() -> Value {
    json!({
        "TextDetectionModelVersion": "3.0",
        "TextDetections": [
            {"DetectedText": "ABC-1D23", "Type": "LINE", "Id": 0, "Confidence": 98.0,
             "Geometry": {"BoundingBox": {"Width": 0.1, "Height": 0.05, "Left": 0.3, "Top": 0.6}, "Polygon": []}},
            {"DetectedText": "XYZ9Z99", "Type": "LINE", "Id": 1, "Confidence": 95.0,
             "Geometry": {"BoundingBox": {"Width": 0.05, "Height": 0.03, "Left": 0.75, "Top": 0.65}, "Polygon": []}}
        ]
    })
}

fn aws_json(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/x-amz-json-1.1")
        .header("x-amzn-requestid", "test-request")
        .body(body.to_string())
}

#[handler]
async fn endpoint(req: &Request, body: poem::Body, Data(fake): Data<&Arc<Fake>>) -> Response {
    let n = fake.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value =
        serde_json::from_slice(&body.into_vec().await.unwrap()).unwrap_or(Value::Null);
    if fake
        .blips
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
        .is_ok()
    {
        return aws_json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"__type": "InternalServerError", "message": "blip"}),
        );
    }
    if let Some(kind) = fake.fail_with {
        return aws_json(
            StatusCode::BAD_REQUEST,
            json!({"__type": kind, "message": "rejected"}),
        );
    }
    if fake.throttle_every > 0 && n % fake.throttle_every == 0 {
        return aws_json(
            StatusCode::BAD_REQUEST,
            json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
        );
    }
    let mut bad = |why: String| fake.bad_requests.lock().unwrap().push(why);
    if body["Image"]["Bytes"].as_str().is_none_or(str::is_empty) {
        bad(format!("{target}: no image bytes"));
    }
    match target.as_str() {
        "RekognitionService.DetectLabels" => {
            if body["MaxLabels"] != json!(10) || body["MinConfidence"] != json!(75.0) {
                bad(format!("DetectLabels parameters: {body}"));
            }
            let features = body["Features"].to_string();
            if !features.contains("GENERAL_LABELS") || !features.contains("IMAGE_PROPERTIES") {
                bad(format!("DetectLabels features: {features}"));
            }
            aws_json(StatusCode::OK, labels_answer())
        }
        "RekognitionService.DetectText" => {
            let regions = body["Filters"]["RegionsOfInterest"]
                .as_array()
                .map_or(0, Vec::len);
            if regions != 2 {
                bad(format!(
                    "DetectText should be limited to the 2 vehicle boxes: {body}"
                ));
            }
            aws_json(StatusCode::OK, text_answer())
        }
        other => aws_json(
            StatusCode::BAD_REQUEST,
            json!({"__type": "UnknownOperationException", "message": other}),
        ),
    }
}

async fn serve(fake: Arc<Fake>) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = Route::new().at("/", post(endpoint)).data(fake);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

fn detector(url: &str) -> RekognitionDetector {
    let config = aws_sdk_rekognition::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(url)
        .build();
    RekognitionDetector::from_config(config).with_base_backoff(Duration::from_millis(2))
}

fn frame() -> FrameImage {
    let image =
        Mat::new_rows_cols_with_default(64, 64, opencv::core::CV_8UC3, Scalar::all(90.0)).unwrap();
    let jpeg = sentinela_core::video::jpeg::encode(&image, 80).unwrap();
    FrameImage {
        image: std::sync::Arc::new(image),
        jpeg,
    }
}

#[tokio::test]
async fn labels_instance_colours_and_text_are_mapped() {
    let fake = Arc::new(Fake::default());
    let url = serve(fake.clone()).await;
    let analysis = detector(&url)
        .detect(&frame(), true)
        .await
        .expect("analysis");

    assert!(
        fake.bad_requests.lock().unwrap().is_empty(),
        "{:?}",
        fake.bad_requests.lock().unwrap()
    );
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        2,
        "DetectLabels then DetectText"
    );
    assert_eq!(
        analysis
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["Bus", "Car", "Road"]
    );
    assert_eq!(analysis.vehicles.len(), 2);
    let bus = &analysis.vehicles[0];
    assert_eq!(bus.kind, VehicleType::Bus);
    assert!((bus.confidence - 0.96).abs() < 1e-6);
    assert_eq!(bus.main_color(), Some(Color::Red));
    assert!((bus.bbox.x - 0.1).abs() < 1e-6 && (bus.bbox.w - 0.5).abs() < 1e-6);
    assert_eq!(
        bus.texts,
        ["ABC-1D23"],
        "the plate inside the bus box goes to the bus"
    );
    let car = &analysis.vehicles[1];
    assert_eq!(
        (car.kind, car.main_color()),
        (VehicleType::Car, Some(Color::Blue))
    );
    assert_eq!(car.texts, ["XYZ9Z99"]);
    assert!(analysis.text_checked);

    // Without a plate in the search, DetectText is not called.
    let before = fake.calls.load(Ordering::SeqCst);
    let analysis = detector(&url).detect(&frame(), false).await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst) - before, 1);
    assert!(!analysis.text_checked && analysis.vehicles[0].texts.is_empty());
}

#[tokio::test]
async fn with_half_the_calls_throttled_every_frame_still_gets_its_analysis() {
    let fake = Arc::new(Fake {
        throttle_every: 2,
        ..Default::default()
    });
    let url = serve(fake.clone()).await;
    let detector = detector(&url);
    for i in 0..20 {
        let analysis = detector
            .detect(&frame(), i % 2 == 0)
            .await
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(analysis.vehicles.len(), 2, "frame {i}");
    }
    assert!(
        detector.throttles() >= 15,
        "throttles counted: {}",
        detector.throttles()
    );
    assert!(fake.bad_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_invalid_image_is_a_permanent_error_and_an_outage_a_transient_one() {
    let url = serve(Arc::new(Fake {
        fail_with: Some("InvalidImageFormatException"),
        ..Default::default()
    }))
    .await;
    let err = detector(&url).detect(&frame(), false).await.unwrap_err();
    assert!(
        matches!(err, DetectError::InvalidImage(_)) && err.is_permanent(),
        "{err}"
    );

    let url = serve(Arc::new(Fake {
        fail_with: Some("InternalServerError"),
        ..Default::default()
    }))
    .await;
    let err = detector(&url).detect(&frame(), false).await.unwrap_err();
    assert!(
        matches!(err, DetectError::Failed(_)) && !err.is_permanent(),
        "{err}"
    );
}

#[tokio::test]
async fn a_blip_is_retried_and_an_outage_still_fails() {
    // Two 500s in a row: DetectLabels is retried and the frame still gets its analysis.
    let fake = Arc::new(Fake {
        blips: AtomicU64::new(2),
        ..Default::default()
    });
    let url = serve(fake.clone()).await;
    let analysis = detector(&url)
        .detect(&frame(), true)
        .await
        .expect("after the blip");
    assert_eq!(analysis.vehicles.len(), 2);
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        4,
        "two failed DetectLabels, then DetectLabels and DetectText"
    );

    // A server that keeps failing: a bounded number of tries, then a retryable failure.
    let fake = Arc::new(Fake {
        blips: AtomicU64::new(u64::MAX),
        ..Default::default()
    });
    let url = serve(fake.clone()).await;
    let err = detector(&url).detect(&frame(), false).await.unwrap_err();
    assert!(
        matches!(err, DetectError::Failed(_)) && !err.is_permanent(),
        "{err}"
    );
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        4,
        "one call and three retries"
    );

    // Nothing listening (a connection refused): retried, then failed.
    let closed = format!("http://127.0.0.1:{}", sentinela_testkit::free_port());
    let err = detector(&closed).detect(&frame(), false).await.unwrap_err();
    assert!(matches!(err, DetectError::Failed(_)), "{err}");
}
