//! Request mapping: how a model's validated input becomes the body of a
//! provider request, written in config so that adding a RunningHub workflow
//! or a Kling model variant needs no code.
//!
//! A template is any JSON value. Strings in it are rendered against the
//! input:
//! - a string that is exactly `"{{name}}"` becomes the input value `name`
//!   with its JSON type kept (a number stays a number);
//! - `"{{name|string}}"` becomes that value as a string (`5` → `"5"`), for
//!   providers that want numbers in strings (Kling's `duration`);
//! - placeholders inside longer strings are interpolated as text
//!   (`"{{width}}:{{height}}"` → `"1024:768"`);
//! - a value that names an input the task does not have is left out: at
//!   the top level just that member, deeper down the whole enclosing object
//!   or array element, so optional inputs need no special casing (a
//!   RunningHub `nodeInfoList` item or a Hunyuan `Image: {Url}` for an
//!   optional image just disappears).
//!
//! Everything else is copied as it is.

use serde_json::{Map, Value};

/// Renders `template` against `input` (an object of validated inputs).
pub fn render(template: &Value, input: &Value) -> Value {
    match template {
        // The top level drops single members; deeper, the whole value goes.
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), render_value(v, input)?)))
                .collect(),
        ),
        other => render_value(other, input).unwrap_or(Value::Null),
    }
}

/// `None` when the value refers to an input that is absent.
fn render_value(template: &Value, input: &Value) -> Option<Value> {
    match template {
        Value::String(s) => render_str(s, input),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|v| render_value(v, input))
                .collect(),
        )),
        Value::Object(members) => {
            let mut out = Map::with_capacity(members.len());
            for (k, v) in members {
                out.insert(k.clone(), render_value(v, input)?);
            }
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

/// A placeholder's input name and whether it asks for text.
fn parse_placeholder(inner: &str) -> (&str, bool) {
    match inner.split_once('|') {
        Some((name, filter)) if filter.trim() == "string" => (name.trim(), true),
        _ => (inner.trim(), false),
    }
}

fn lookup<'a>(input: &'a Value, name: &str) -> Option<&'a Value> {
    input.get(name).filter(|v| !v.is_null())
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_str(s: &str, input: &Value) -> Option<Value> {
    if !s.contains("{{") {
        return Some(Value::String(s.to_owned()));
    }
    // The whole string is one placeholder: keep the value's type.
    if let Some(inner) = s.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
    {
        let (name, text) = parse_placeholder(inner);
        let v = lookup(input, name)?;
        return Some(if text {
            Value::String(as_text(v))
        } else {
            v.clone()
        });
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let (name, _) = parse_placeholder(&after[..end]);
        out.push_str(&as_text(lookup(input, name)?));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(Value::String(out))
}

/// The input names a template refers to, for checking a config against the
/// model's input schema at load.
pub fn placeholders(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(template, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                out.push(parse_placeholder(&after[..end]).0.to_owned());
                rest = &after[end + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_types_interpolates_and_drops_absent_inputs() {
        let template = json!({
            "workflowId": "1904136902449209346",
            "nodeInfoList": [
                {"nodeId": "6", "fieldName": "text", "fieldValue": "{{prompt}}"},
                {"nodeId": "3", "fieldName": "seed", "fieldValue": "{{seed}}"},
                {"nodeId": "10", "fieldName": "image", "fieldValue": "{{image_url}}"}
            ],
            "Resolution": "{{width}}:{{height}}",
            "duration": "{{duration|string}}",
            "instanceType": "plus"
        });
        let input =
            json!({"prompt": "a fox", "seed": 42, "width": 1024, "height": 768, "duration": 5});
        assert_eq!(
            render(&template, &input),
            json!({
                "workflowId": "1904136902449209346",
                "nodeInfoList": [
                    {"nodeId": "6", "fieldName": "text", "fieldValue": "a fox"},
                    {"nodeId": "3", "fieldName": "seed", "fieldValue": 42}
                ],
                "Resolution": "1024:768",
                "duration": "5",
                "instanceType": "plus"
            })
        );
    }

    #[test]
    fn an_absent_input_drops_its_member_or_its_whole_nested_object() {
        let t = json!({"Prompt": "{{prompt}}", "NegativePrompt": "{{negative_prompt}}",
                       "Image": {"Url": "{{image_url}}"}});
        assert_eq!(
            render(&t, &json!({"prompt": "x", "negative_prompt": null})),
            json!({"Prompt": "x"})
        );
        assert_eq!(
            render(&t, &json!({"prompt": "x", "image_url": "https://a/b.png"})),
            json!({"Prompt": "x", "Image": {"Url": "https://a/b.png"}})
        );
    }

    #[test]
    fn lists_the_inputs_a_template_uses() {
        let t = json!({"a": "{{x}}", "b": ["{{ y|string }}", "{{x}}-{{z}}"], "c": 1});
        assert_eq!(placeholders(&t), vec!["x", "y", "z"]);
    }
}
