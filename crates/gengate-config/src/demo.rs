//! The built-in demo: the simulated provider and a small model catalog on
//! it, so that `gengate serve` with no configuration runs tasks end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use gengate_core::ModelKind;
use gengate_core::model::{FieldSpec, FieldType};
use serde_json::json;

use crate::types::{ModelConfig, ProviderConfig, default_deadline, default_max_attempts};
use crate::units::DurRange;

fn field(ty: FieldType) -> FieldSpec {
    FieldSpec::new(ty)
}

fn prompt_fields() -> BTreeMap<String, FieldSpec> {
    let mut f = BTreeMap::new();
    f.insert(
        "prompt".into(),
        FieldSpec {
            required: true,
            min_length: Some(1),
            max_length: Some(2000),
            description: Some("What to generate.".into()),
            ..field(FieldType::String)
        },
    );
    f.insert(
        "negative_prompt".into(),
        FieldSpec {
            max_length: Some(2000),
            description: Some("What to avoid.".into()),
            ..field(FieldType::String)
        },
    );
    f.insert(
        "seed".into(),
        FieldSpec {
            minimum: Some(0.0),
            maximum: Some(4_294_967_295.0),
            ..field(FieldType::Integer)
        },
    );
    f
}

/// The demo catalog used when the config declares no models.
pub(crate) fn demo_models() -> BTreeMap<String, ModelConfig> {
    let mut image = prompt_fields();
    image.insert(
        "size".into(),
        FieldSpec {
            values: vec![
                json!("512x512"),
                json!("768x768"),
                json!("1024x1024"),
                json!("768x1024"),
                json!("1024x768"),
            ],
            default: Some(json!("1024x1024")),
            ..field(FieldType::Enum)
        },
    );
    image.insert(
        "steps".into(),
        FieldSpec {
            minimum: Some(1.0),
            maximum: Some(50.0),
            default: Some(json!(20)),
            ..field(FieldType::Integer)
        },
    );
    let mut video = prompt_fields();
    video.insert(
        "duration".into(),
        FieldSpec {
            values: vec![json!("5"), json!("10")],
            default: Some(json!("5")),
            ..field(FieldType::Enum)
        },
    );
    video.insert(
        "image_url".into(),
        FieldSpec {
            description: Some("Optional first frame.".into()),
            ..field(FieldType::Url)
        },
    );
    let mut m = BTreeMap::new();
    m.insert(
        "sim-image".into(),
        ModelConfig {
            provider: "sim".into(),
            kind: ModelKind::Image,
            description: "Simulated text-to-image model (PNG).".into(),
            max_attempts: default_max_attempts(),
            deadline: default_deadline(),
            expected: DurRange(Duration::from_secs(4), Duration::from_secs(4)),
            input: image,
            endpoint: None,
            params: None,
            failover: None,
            price: None,
            refund_on: None,
        },
    );
    m.insert(
        "sim-video".into(),
        ModelConfig {
            provider: "sim".into(),
            kind: ModelKind::Video,
            description: "Simulated text/image-to-video model (AVI).".into(),
            max_attempts: default_max_attempts(),
            deadline: default_deadline(),
            expected: DurRange(Duration::from_secs(4), Duration::from_secs(4)),
            input: video,
            endpoint: None,
            params: None,
            failover: None,
            price: None,
            refund_on: None,
        },
    );
    m
}

pub(crate) fn default_sim() -> ProviderConfig {
    toml::from_str("kind = \"sim\"").expect("the default sim provider parses")
}
