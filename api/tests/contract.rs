//! The API contract: the document the server serves is the one committed as `docs/openapi.json`
//! (so every change to the contract shows up in review), and it says what integrators need:
//! stable snake_case operation ids, required fields, enums, `date-time` formats, `Location` on
//! every 201, the right content types, examples on request bodies and links from each create.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn document() -> Value {
    serde_json::from_str(&sentinela_api::openapi_document()).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn the_served_document_is_the_committed_one() {
    let served = sentinela_api::openapi_document();
    let committed = committed();
    if served.trim_end() != committed.trim_end() {
        let line = served
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| served.lines().count().min(committed.lines().count()));
        panic!(
            "the API contract changed: docs/openapi.json differs from what the server serves \
             (first at line {}). Review the change, then regenerate it with\n  \
             cargo run -p sentinela-api -- openapi > docs/openapi.json",
            line + 1
        );
    }
}

#[test]
fn every_operation_has_a_unique_snake_case_id_and_a_tag() {
    let doc = document();
    let mut seen = HashSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{method} {path}: operationId {id:?} is not snake_case"
        );
        assert!(seen.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path} has no tag"
        );
    }
    for tag in doc["tags"].as_array().unwrap() {
        let description = tag["description"].as_str().unwrap_or_default();
        assert!(
            description.len() > 20,
            "tag {} is not described: {description:?}",
            tag["name"]
        );
    }
}

#[test]
fn creates_answer_with_location_and_link_to_the_new_object() {
    let doc = document();
    let mut creates = 0;
    for (method, path, op) in operations(&doc) {
        for status in ["201", "202"] {
            let Some(answer) = op["responses"].get(status) else {
                continue;
            };
            creates += 1;
            let headers = answer["headers"].as_object().cloned().unwrap_or_default();
            assert!(
                headers.keys().any(|h| h.eq_ignore_ascii_case("location")),
                "{method} {path} answers {status} without a Location header"
            );
            let links = answer["links"].as_object().cloned().unwrap_or_default();
            assert!(
                links.len() >= 2,
                "{method} {path}: {status} has no links to the new object's operations"
            );
            for (name, link) in links {
                let target = link["operationId"].as_str().unwrap();
                assert!(
                    operations(&doc)
                        .iter()
                        .any(|(_, _, op)| op["operationId"] == target),
                    "link {name} names an unknown operation {target}"
                );
            }
        }
    }
    assert_eq!(
        creates, 5,
        "searches, cities, cameras, recordings, API keys"
    );
}

#[test]
fn bodies_say_what_is_required_and_what_values_are_allowed() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let search = &schemas["CreateSearch"];
    let required: HashSet<&str> = search["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        required,
        HashSet::from(["city_id", "start_date", "end_date"]),
        "CreateSearch's required fields"
    );
    for field in ["start_date", "end_date"] {
        assert_eq!(search["properties"][field]["format"], "date-time");
    }
    assert!(search["example"].is_object(), "CreateSearch has an example");
    let status = &schemas["SearchState"]["enum"];
    assert_eq!(
        status.as_array().map(Vec::len),
        Some(7),
        "the search status is an enum of its seven values: {status}"
    );
    assert!(schemas["TaskState"]["enum"].is_array());
    for (schema, field) in [
        ("UpdateCamera", "latitude"),
        ("UpdateCity", "daily_detector_calls"),
        ("UpdateApiKey", "expires_at"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["nullable"], true,
            "{schema}.{field} may be null (to clear it)"
        );
    }
    assert!(schemas["Problem"]["example"]["errors"].is_array());
    for body in ["CreateCity", "CreateCamera", "CreateApiKey", "UpdateCamera"] {
        assert!(
            schemas[body]["example"].is_object(),
            "{body} has an example"
        );
    }
    let content_type = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]
            .as_object()
            .and_then(|c| c.keys().next().cloned())
            .unwrap_or_default()
    };
    assert_eq!(
        content_type("/api/v1/searches/{id}/sightings/{sighting}/image"),
        "image/jpeg"
    );
    assert_eq!(
        content_type("/api/v1/searches/{id}/sightings/{sighting}/clip"),
        "video/mp4"
    );
    assert!(content_type("/api/v1/searches/{id}/export.csv").starts_with("text/csv"));
    assert_eq!(
        content_type("/api/v1/searches/{id}/export.geojson"),
        "application/geo+json"
    );
}
