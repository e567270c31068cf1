//! The model catalog's entries: which provider runs a model, and the input
//! schema its tasks must satisfy. Operators declare models in config; this
//! module validates a request's `input` against that declaration and fills in
//! defaults, naming the offending field in every refusal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Image,
    Video,
}

/// The type of one input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    /// One of `values`.
    Enum,
    /// An absolute `http`/`https` URL (e.g. a reference image).
    Url,
}

/// One field of a model's input schema, as written in config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Strings: length bounds in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Numbers: inclusive bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Enums: the allowed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
}

/// URLs longer than this are refused whatever the schema says.
pub const MAX_URL_LEN: usize = 2048;

/// A model as the catalog knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub provider: String,
    pub kind: ModelKind,
    pub description: String,
    /// Submissions allowed per task (1 = no retry).
    pub max_attempts: u32,
    /// A task fails with `deadline_exceeded` this long after creation.
    pub deadline_ms: i64,
    /// The ETA used before any latency has been observed.
    pub expected_seconds: f64,
    /// The typical run-time range (seconds) as configured, which times the
    /// first polls until real run times have been observed. Equal bounds
    /// mean only a typical value is known.
    pub expected_range: (f64, f64),
    pub fields: BTreeMap<String, FieldSpec>,
    /// The provider operation that runs it (`None`: the provider's default
    /// for `kind`).
    pub endpoint: Option<String>,
    /// The provider request template (see [`crate::mapping`]).
    pub params: Value,
    /// A second provider account that runs the model while the first one's
    /// circuit is open.
    pub failover: Option<String>,
    /// What a task costs (`None`: free).
    pub price: Option<crate::billing::Price>,
    /// Which endings refund a task's credits.
    pub refund_on: crate::billing::RefundOn,
}

/// An input that does not satisfy the model's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// Path of the offending field, e.g. `input.prompt`.
    pub field: String,
    pub message: String,
}

impl InputError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: format!("input.{field}"),
            message: message.into(),
        }
    }
}

impl FieldSpec {
    /// A field of type `ty` with nothing else declared (optional, no default,
    /// no bounds).
    pub fn new(ty: FieldType) -> Self {
        FieldSpec {
            ty,
            required: false,
            default: None,
            description: None,
            min_length: None,
            max_length: None,
            minimum: None,
            maximum: None,
            values: vec![],
        }
    }

    /// Checks that the declaration itself makes sense (called at config load).
    ///
    /// # Errors
    /// A message naming what is wrong with the declaration.
    pub fn check(&self) -> Result<(), String> {
        if self.ty == FieldType::Enum && self.values.is_empty() {
            return Err("an enum field needs a non-empty `values` list".into());
        }
        if let (Some(lo), Some(hi)) = (self.min_length, self.max_length)
            && lo > hi
        {
            return Err("min_length is greater than max_length".into());
        }
        if let (Some(lo), Some(hi)) = (self.minimum, self.maximum)
            && lo > hi
        {
            return Err("minimum is greater than maximum".into());
        }
        if let Some(d) = &self.default {
            self.validate("default", d)
                .map_err(|e| format!("default value is invalid: {}", e.message))?;
        }
        Ok(())
    }

    fn validate(&self, name: &str, v: &Value) -> Result<(), InputError> {
        match self.ty {
            FieldType::String => {
                let s = v.as_str().ok_or_else(|| {
                    InputError::new(name, format!("input.{name} must be a string"))
                })?;
                let len = s.chars().count() as u64;
                let lo = u64::from(self.min_length.unwrap_or(0));
                let hi = self.max_length.map_or(u64::MAX, u64::from);
                if len < lo || len > hi {
                    let msg = match self.max_length {
                        Some(hi) => format!("input.{name} must be {lo}..{hi} characters"),
                        None => format!("input.{name} must be at least {lo} characters"),
                    };
                    return Err(InputError::new(name, msg));
                }
            }
            FieldType::Integer | FieldType::Number => {
                let n = if self.ty == FieldType::Integer {
                    v.as_i64().map(|n| n as f64)
                } else {
                    v.as_f64()
                };
                let what = if self.ty == FieldType::Integer {
                    "an integer"
                } else {
                    "a number"
                };
                let n =
                    n.ok_or_else(|| InputError::new(name, format!("input.{name} must be {what}")))?;
                let lo = self.minimum.unwrap_or(f64::NEG_INFINITY);
                let hi = self.maximum.unwrap_or(f64::INFINITY);
                if n < lo || n > hi {
                    return Err(InputError::new(
                        name,
                        format!("input.{name} must be between {lo} and {hi}"),
                    ));
                }
            }
            FieldType::Boolean => {
                if !v.is_boolean() {
                    return Err(InputError::new(
                        name,
                        format!("input.{name} must be true or false"),
                    ));
                }
            }
            FieldType::Enum => {
                if !self.values.contains(v) {
                    let allowed: Vec<String> = self.values.iter().map(Value::to_string).collect();
                    return Err(InputError::new(
                        name,
                        format!("input.{name} must be one of {}", allowed.join(", ")),
                    ));
                }
            }
            FieldType::Url => {
                let s = v.as_str().ok_or_else(|| {
                    InputError::new(name, format!("input.{name} must be a URL string"))
                })?;
                if !is_http_url(s) {
                    return Err(InputError::new(
                        name,
                        format!(
                            "input.{name} must be an absolute http(s) URL of at most {MAX_URL_LEN} characters"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl FieldSpec {
    /// This field as JSON Schema (draft 2020-12), accepting exactly what
    /// [`ModelSpec::validate_input`] accepts for it. An optional field may
    /// also be `null`, which means "not given".
    pub fn json_schema(&self) -> Value {
        let mut s = Map::new();
        let ty = match self.ty {
            FieldType::String => Some("string"),
            FieldType::Integer => Some("integer"),
            FieldType::Number => Some("number"),
            FieldType::Boolean => Some("boolean"),
            FieldType::Url => Some("string"),
            FieldType::Enum => None,
        };
        match (ty, self.required) {
            (Some(ty), true) => {
                s.insert("type".into(), ty.into());
            }
            (Some(ty), false) => {
                s.insert("type".into(), serde_json::json!([ty, "null"]));
            }
            (None, _) => {
                let mut values = self.values.clone();
                if !self.required {
                    values.push(Value::Null);
                }
                s.insert("enum".into(), Value::Array(values));
            }
        }
        if self.ty == FieldType::Url {
            s.insert("format".into(), "uri".into());
            s.insert("maxLength".into(), MAX_URL_LEN.into());
            s.insert("pattern".into(), URL_PATTERN.into());
        }
        if let Some(n) = self.min_length {
            s.insert("minLength".into(), n.into());
        }
        if let Some(n) = self.max_length {
            s.insert("maxLength".into(), n.into());
        }
        for (key, bound) in [("minimum", self.minimum), ("maximum", self.maximum)] {
            if let Some(b) = bound {
                s.insert(key.into(), number(b));
            }
        }
        if let Some(d) = &self.default {
            s.insert("default".into(), d.clone());
        }
        if let Some(d) = &self.description {
            s.insert("description".into(), d.clone().into());
        }
        Value::Object(s)
    }
}

/// [`is_http_url`] as far as a regular expression says it: `http(s)://`, a
/// host that does not start with `:`, no spaces or control characters.
const URL_PATTERN: &str = r"^https?://[^\s/?#:\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*$";

/// A bound as JSON: an integer where it is one, so that schemas read `1`,
/// not `1.0`.
fn number(b: f64) -> Value {
    if b.fract() == 0.0 && b.abs() < 9.0e15 {
        Value::from(b as i64)
    } else {
        Value::from(b)
    }
}

/// Whether `s` is an absolute `http`/`https` URL of sane length with a host.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        s.len() <= MAX_URL_LEN
            && !host.is_empty()
            && !host.starts_with(':')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

impl ModelSpec {
    /// What a task with this validated `input` holds of its owner's
    /// credits (`None`: the model is free).
    ///
    /// # Errors
    /// [`InputError`] when the input does not say how much (a per-second
    /// price without a duration).
    pub fn billing(&self, input: &Value) -> Result<Option<crate::billing::Billing>, InputError> {
        let Some(price) = &self.price else {
            return Ok(None);
        };
        let held = price.hold(input).map_err(|message| InputError {
            field: "input".into(),
            message,
        })?;
        Ok(Some(crate::billing::Billing {
            held,
            per_output: match price {
                crate::billing::Price::PerOutput { per_output, .. } => Some(*per_output),
                _ => None,
            },
            refund_on: self.refund_on,
        }))
    }

    /// Validates `input` and returns it with defaults filled in.
    ///
    /// The model's input as a JSON Schema (draft 2020-12) document: an
    /// object of the declared fields, no others.
    pub fn input_schema(&self) -> Value {
        let properties: Map<String, Value> = self
            .fields
            .iter()
            .map(|(name, f)| (name.clone(), f.json_schema()))
            .collect();
        let required: Vec<&str> = self
            .fields
            .iter()
            .filter(|(_, f)| f.required)
            .map(|(name, _)| name.as_str())
            .collect();
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.name,
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// # Errors
    /// [`InputError`] for the first offending field, in field-name order:
    /// not an object, an unknown field, a missing required field, or a value
    /// outside the field's declaration.
    pub fn validate_input(&self, input: &Value) -> Result<Value, InputError> {
        let Some(obj) = input.as_object() else {
            return Err(InputError {
                field: "input".into(),
                message: "input must be a JSON object".into(),
            });
        };
        if let Some(unknown) = obj.keys().find(|k| !self.fields.contains_key(*k)) {
            let known: Vec<&str> = self.fields.keys().map(String::as_str).collect();
            return Err(InputError::new(
                unknown,
                format!(
                    "input.{unknown} is not an input of model {}; it takes: {}",
                    self.name,
                    known.join(", ")
                ),
            ));
        }
        let mut out = Map::new();
        for (name, spec) in &self.fields {
            match obj.get(name).filter(|v| !v.is_null()) {
                Some(v) => {
                    spec.validate(name, v)?;
                    out.insert(name.clone(), v.clone());
                }
                None if spec.required => {
                    return Err(InputError::new(name, format!("input.{name} is required")));
                }
                None => {
                    if let Some(d) = &spec.default {
                        out.insert(name.clone(), d.clone());
                    }
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(ty: FieldType) -> FieldSpec {
        FieldSpec::new(ty)
    }

    fn model() -> ModelSpec {
        let mut fields = BTreeMap::new();
        fields.insert(
            "prompt".into(),
            FieldSpec {
                required: true,
                min_length: Some(1),
                max_length: Some(2000),
                ..field(FieldType::String)
            },
        );
        fields.insert(
            "size".into(),
            FieldSpec {
                values: vec![json!("512x512"), json!("1024x1024")],
                default: Some(json!("512x512")),
                ..field(FieldType::Enum)
            },
        );
        fields.insert(
            "steps".into(),
            FieldSpec {
                minimum: Some(1.0),
                maximum: Some(50.0),
                ..field(FieldType::Integer)
            },
        );
        fields.insert("image_url".into(), field(FieldType::Url));
        ModelSpec {
            name: "m".into(),
            provider: "sim".into(),
            kind: ModelKind::Image,
            description: String::new(),
            max_attempts: 3,
            deadline_ms: 60_000,
            expected_seconds: 5.0,
            expected_range: (5.0, 5.0),
            fields,
            endpoint: None,
            params: Value::Null,
            failover: None,
            price: None,
            refund_on: Default::default(),
        }
    }

    #[test]
    fn fills_defaults_and_keeps_valid_values() {
        let v = model()
            .validate_input(&json!({"prompt": "a fox", "steps": 20}))
            .unwrap();
        assert_eq!(
            v,
            json!({"prompt": "a fox", "size": "512x512", "steps": 20})
        );
    }

    #[test]
    fn names_the_offending_field() {
        let m = model();
        let cases = [
            (json!({}), "input.prompt", "input.prompt is required"),
            (
                json!({"prompt": ""}),
                "input.prompt",
                "input.prompt must be 1..2000 characters",
            ),
            (
                json!({"prompt": 5}),
                "input.prompt",
                "input.prompt must be a string",
            ),
            (
                json!({"prompt": "x", "size": "7x7"}),
                "input.size",
                "input.size must be one of \"512x512\", \"1024x1024\"",
            ),
            (
                json!({"prompt": "x", "steps": 51}),
                "input.steps",
                "input.steps must be between 1 and 50",
            ),
            (
                json!({"prompt": "x", "steps": 1.5}),
                "input.steps",
                "input.steps must be an integer",
            ),
            (
                json!({"prompt": "x", "image_url": "file:///etc/passwd"}),
                "input.image_url",
                "",
            ),
            (json!({"prompt": "x", "colour": 1}), "input.colour", ""),
            (
                json!("just a string"),
                "input",
                "input must be a JSON object",
            ),
        ];
        for (input, field, msg) in cases {
            let err = m.validate_input(&input).unwrap_err();
            assert_eq!(err.field, field, "{input}");
            if !msg.is_empty() {
                assert_eq!(err.message, msg);
            }
        }
        let long: String = "é".repeat(2001);
        assert_eq!(
            m.validate_input(&json!({"prompt": long}))
                .unwrap_err()
                .field,
            "input.prompt"
        );
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(is_http_url("https://cdn.example.com/a.png"));
        assert!(is_http_url("http://127.0.0.1:9000/x"));
        assert!(!is_http_url("https:///nohost"));
        assert!(!is_http_url("https://a b"));
        assert!(!is_http_url("ftp://x"));
    }

    #[test]
    fn bad_declarations_are_refused() {
        assert!(field(FieldType::Enum).check().is_err());
        let bad_default = FieldSpec {
            default: Some(json!(3)),
            ..field(FieldType::String)
        };
        assert!(bad_default.check().is_err());
    }
}
