//! Every field error of a JSON request body at once. poem-openapi stops at the first field that
//! does not parse (and for a missing or mistyped one does not even name it); when it refuses a
//! body, this checks the same body against the operation's schema in the OpenAPI document —
//! required fields, types, `date-time`, bounds, lengths, item counts, enums — and reports every
//! violation with its field, so a client fixes its request in one round trip.

use std::collections::HashMap;

use serde_json::Value;

/// One violation: the field (`camera_ids[2]`, `key.name`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, as a path into the body.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The request-body schemas of every operation, by (method, path template).
#[derive(Debug, Clone, Default)]
pub struct BodySchemas {
    schemas: Value,
    bodies: HashMap<(String, String), Value>,
}

impl BodySchemas {
    /// Reads the request bodies of every operation of an OpenAPI document.
    pub fn from_document(doc: &Value) -> Self {
        let mut bodies = HashMap::new();
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let content = &op["requestBody"]["content"];
                if let Some(schema) = content
                    .as_object()
                    .and_then(|c| c.iter().find(|(t, _)| t.starts_with("application/json")))
                    .map(|(_, media)| media["schema"].clone())
                {
                    bodies.insert((method.to_uppercase(), path.clone()), schema);
                }
            }
        }
        Self {
            schemas: doc["components"]["schemas"].clone(),
            bodies,
        }
    }

    /// The violations of `body` sent to `method` `template`; `None` when the operation takes no
    /// JSON body. A body that is not JSON at all is one violation without a field (`""`).
    pub fn check(&self, method: &str, template: &str, body: &[u8]) -> Option<Vec<FieldError>> {
        let schema = self.bodies.get(&(method.to_owned(), template.to_owned()))?;
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Some(vec![FieldError {
                    field: String::new(),
                    message: format!("the body is not valid JSON: {e}"),
                }]);
            }
        };
        let mut errors = Vec::new();
        self.value(schema, &value, "", &mut errors);
        Some(errors)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => r
                .strip_prefix("#/components/schemas/")
                .map_or(schema, |name| &self.schemas[name]),
            None => schema,
        }
    }

    fn value(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<FieldError>) {
        let schema = self.resolve(schema);
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                self.value(part, value, at, out);
            }
            return;
        }
        let mut fail = |message: String| {
            out.push(FieldError {
                field: at.to_owned(),
                message,
            })
        };
        if value.is_null() {
            if !schema["nullable"].as_bool().unwrap_or(false) && schema.get("type").is_some() {
                fail("must not be null".into());
            }
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
                fail(format!("must be one of {}", names.join(", ")));
            }
            return;
        }
        match schema["type"].as_str() {
            Some("object") => self.object(schema, value, at, out),
            Some("array") => {
                let Some(items) = value.as_array() else {
                    return fail("must be an array".into());
                };
                let n = items.len() as f64;
                if schema["minItems"].as_f64().is_some_and(|min| n < min) {
                    fail(format!("must have at least {} items", schema["minItems"]));
                }
                if schema["maxItems"].as_f64().is_some_and(|max| n > max) {
                    fail(format!("must have at most {} items", schema["maxItems"]));
                }
                for (i, item) in items.iter().enumerate() {
                    self.value(&schema["items"], item, &format!("{at}[{i}]"), out);
                }
            }
            Some("string") => {
                let Some(text) = value.as_str() else {
                    return fail("must be a string".into());
                };
                let n = text.chars().count() as f64;
                if schema["minLength"].as_f64().is_some_and(|min| n < min) {
                    fail(format!(
                        "must be at least {} characters",
                        schema["minLength"]
                    ));
                }
                if schema["maxLength"].as_f64().is_some_and(|max| n > max) {
                    fail(format!(
                        "must be at most {} characters",
                        schema["maxLength"]
                    ));
                }
                if schema["format"] == "date-time"
                    && chrono::DateTime::parse_from_rfc3339(text).is_err()
                {
                    fail(format!(
                        "{text:?} is not an RFC 3339 date-time with an offset (for example 2026-11-29T08:00:00-03:00)"
                    ));
                }
            }
            Some(kind @ ("integer" | "number")) => {
                let whole = match schema["format"].as_str() {
                    Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    Some("uint64") => value.as_u64().is_some(),
                    _ => value.as_i64().is_some(),
                };
                if kind == "integer" && !whole {
                    return fail(format!(
                        "must be a whole number ({})",
                        schema["format"].as_str().unwrap_or("integer")
                    ));
                }
                let Some(n) = value.as_f64() else {
                    return fail("must be a number".into());
                };
                if schema["minimum"].as_f64().is_some_and(|min| n < min) {
                    fail(format!("must be at least {}", schema["minimum"]));
                }
                if schema["maximum"].as_f64().is_some_and(|max| n > max) {
                    fail(format!("must be at most {}", schema["maximum"]));
                }
            }
            Some("boolean") if !value.is_boolean() => fail("must be true or false".into()),
            _ => {}
        }
    }

    fn object(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<FieldError>) {
        let Some(fields) = value.as_object() else {
            out.push(FieldError {
                field: at.to_owned(),
                message: "must be a JSON object".into(),
            });
            return;
        };
        let join = |name: &str| {
            if at.is_empty() {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            }
        };
        for name in schema["required"].as_array().into_iter().flatten() {
            let Some(name) = name.as_str() else { continue };
            if fields.get(name).is_none_or(Value::is_null) {
                out.push(FieldError {
                    field: join(name),
                    message: "is required".into(),
                });
            }
        }
        let required = |name: &str| {
            schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|n| n == name))
        };
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            match fields.get(name) {
                None => {}
                // A required field's null was reported above; an optional one's null means absent.
                Some(Value::Null) if required(name) => {}
                Some(Value::Null)
                    if !self.resolve(property)["nullable"]
                        .as_bool()
                        .unwrap_or(false) => {}
                Some(v) => self.value(property, v, &join(name), out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> BodySchemas {
        BodySchemas::from_document(
            &serde_json::from_str(&crate::openapi_document()).expect("the document is JSON"),
        )
    }

    #[test]
    fn every_violation_is_reported_with_its_field() {
        let body = json!({
            "city_id": "one",
            "plate": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "start_date": "2026-11-29T08:00:00",
            "camera_ids": [1, "two"],
        });
        let errors = schemas()
            .check("POST", "/api/v1/searches", body.to_string().as_bytes())
            .unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for field in [
            "city_id",
            "plate",
            "start_date",
            "end_date",
            "camera_ids[1]",
        ] {
            assert!(fields.contains(&field), "{field} missing from {errors:?}");
        }
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn a_valid_body_and_nulls_of_optional_fields_pass() {
        let body = json!({
            "city_id": 1,
            "color": null,
            "start_date": "2026-11-29T08:00:00-03:00",
            "end_date": "2026-11-29T09:00:00Z",
        });
        let errors = schemas()
            .check("POST", "/api/v1/searches", body.to_string().as_bytes())
            .unwrap();
        assert_eq!(errors, []);
        assert!(schemas().check("GET", "/api/v1/searches", b"").is_none());
        let errors = schemas()
            .check(
                "PATCH",
                "/api/v1/cameras/{id}",
                br#"{"location": null, "latitude": 91}"#,
            )
            .unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "latitude");
    }
}
