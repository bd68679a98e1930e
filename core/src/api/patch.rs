//! Reshaping an Ollama-native body before it is forwarded (herd-router.md §6.1–6.3): the served
//! model, context pinning, the output budget, `keep_alive`, forced streaming and stripping herd's
//! own fields. What to change is policy (`policy::context`); this module only edits JSON.
//!
//! The router decides what to change and says so in a [`BodyPatch`]; [`apply_patch`] only edits
//! JSON, so every other field the client sent reaches the backend untouched.

use serde_json::{Map, Value};

use crate::ids::ModelName;

/// What to do with `options.num_ctx`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NumCtxPatch {
    /// Set it (pin to the resident context, or inject an override).
    Set(u32),
    /// Remove it, letting the backend keep whatever context is loaded.
    Remove,
}

/// The changes the router makes to a native body before forwarding it. `None` / `false` fields
/// leave the body alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BodyPatch {
    /// Replace `model` (a client fallback or a VRAM substitute).
    pub model: Option<ModelName>,
    /// Set or remove `options.num_ctx`.
    pub num_ctx: Option<NumCtxPatch>,
    /// Set `options.num_predict` (for example the inflated thinking budget).
    pub num_predict: Option<u32>,
    /// Set the top-level `max_tokens`: an Anthropic body's output budget, which Ollama's
    /// `/v1/messages` reads as `num_predict` (the thinking budget of a passed-through request).
    pub max_tokens: Option<u32>,
    /// A `keep_alive` to use **only when the client sent none** (absent or `null`): the client's own
    /// choice, including `0` to unload, always wins. ollama-herd uses `-1` (keep loaded).
    pub keep_alive: Option<Value>,
    /// Set `stream` (the router streams from backends even when the client did not ask).
    pub force_stream: Option<bool>,
    /// Remove herd's own fields, which no backend knows: `fallback_models`, `fallback` and
    /// `metadata.tags` (and `metadata` itself when nothing else is left in it).
    pub strip_herd_fields: bool,
}

/// Applies `patch` to an Ollama-native body in place. Idempotent: applying the same patch twice
/// gives the same body as applying it once.
///
/// A non-object `options` (which Ollama would refuse anyway) is replaced by an object when an
/// option has to be set.
pub fn apply_patch(body: &mut Map<String, Value>, patch: &BodyPatch) {
    if let Some(model) = &patch.model {
        body.insert("model".into(), Value::String(model.as_str().to_string()));
    }
    match patch.num_ctx {
        Some(NumCtxPatch::Set(n)) => {
            set_option(body, "num_ctx", n.into());
        }
        Some(NumCtxPatch::Remove) => {
            if let Some(Value::Object(options)) = body.get_mut("options") {
                options.remove("num_ctx");
            }
        }
        None => {}
    }
    if let Some(n) = patch.num_predict {
        set_option(body, "num_predict", n.into());
    }
    if let Some(n) = patch.max_tokens {
        body.insert("max_tokens".into(), n.into());
    }
    if let Some(keep_alive) = &patch.keep_alive {
        if body.get("keep_alive").is_none_or(Value::is_null) {
            body.insert("keep_alive".into(), keep_alive.clone());
        }
    }
    if let Some(stream) = patch.force_stream {
        body.insert("stream".into(), Value::Bool(stream));
    }
    if patch.strip_herd_fields {
        for name in super::wire::HERD_FIELDS {
            body.remove(name);
        }
        let (outer, inner) = super::wire::HERD_METADATA_FIELD;
        if let Some(Value::Object(metadata)) = body.get_mut(outer) {
            metadata.remove(inner);
            if metadata.is_empty() {
                body.remove(outer);
            }
        }
    }
}

/// Sets `options.<key>`, creating `options` (or replacing a non-object) when needed.
fn set_option(body: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(Value::Object(options)) = body.get_mut("options") {
        options.insert(key.into(), value);
    } else {
        let mut options = Map::new();
        options.insert(key.into(), value);
        body.insert("options".into(), Value::Object(options));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn worked_example_full_patch() {
        let mut body = obj(json!({
            "model": "m", "stream": false, "options": {"num_ctx": 2048, "top_p": 0.5},
            "messages": [{"role": "user", "content": "hi"}], "tools": [],
            "fallback_models": ["b"], "fallback": false,
            "metadata": {"tags": ["proj"]}
        }));
        let patch = BodyPatch {
            model: Some(ModelName::new("qwen3:8b")),
            num_ctx: Some(NumCtxPatch::Set(8192)),
            num_predict: Some(4096),
            max_tokens: None,
            keep_alive: Some(json!(-1)),
            force_stream: Some(true),
            strip_herd_fields: true,
        };
        apply_patch(&mut body, &patch);
        assert_eq!(
            Value::Object(body),
            json!({
                "model": "qwen3:8b", "stream": true, "keep_alive": -1,
                "options": {"num_ctx": 8192, "num_predict": 4096, "top_p": 0.5},
                "messages": [{"role": "user", "content": "hi"}], "tools": []
            })
        );
    }

    #[test]
    fn keep_alive_only_when_absent_or_null() {
        let patch = BodyPatch { keep_alive: Some(json!(-1)), ..BodyPatch::default() };
        let mut body = obj(json!({"model": "m", "keep_alive": 0.0}));
        apply_patch(&mut body, &patch);
        assert_eq!(body["keep_alive"], json!(0.0));
        let mut body = obj(json!({"model": "m", "keep_alive": null}));
        apply_patch(&mut body, &patch);
        assert_eq!(body["keep_alive"], json!(-1));
        let mut body = obj(json!({"model": "m"}));
        apply_patch(&mut body, &patch);
        assert_eq!(body["keep_alive"], json!(-1));
    }

    #[test]
    fn num_ctx_remove_and_bad_options() {
        let remove = BodyPatch { num_ctx: Some(NumCtxPatch::Remove), ..BodyPatch::default() };
        let mut body = obj(json!({"options": {"num_ctx": 4096, "seed": 1}}));
        apply_patch(&mut body, &remove);
        assert_eq!(Value::Object(body), json!({"options": {"seed": 1}}));
        let mut body = obj(json!({"model": "m"}));
        apply_patch(&mut body, &remove);
        assert_eq!(Value::Object(body), json!({"model": "m"}));
        let set = BodyPatch { num_ctx: Some(NumCtxPatch::Set(1024)), ..BodyPatch::default() };
        let mut body = obj(json!({"options": "garbage"}));
        apply_patch(&mut body, &set);
        assert_eq!(Value::Object(body), json!({"options": {"num_ctx": 1024}}));
    }

    #[test]
    fn strip_keeps_other_metadata() {
        let strip = BodyPatch { strip_herd_fields: true, ..BodyPatch::default() };
        let mut body = obj(json!({"metadata": {"tags": ["a"], "user_id": "u"}, "fallback": true}));
        apply_patch(&mut body, &strip);
        assert_eq!(Value::Object(body), json!({"metadata": {"user_id": "u"}}));
        let mut body = obj(json!({"metadata": "not an object"}));
        apply_patch(&mut body, &strip);
        assert_eq!(Value::Object(body), json!({"metadata": "not an object"}));
    }

    #[test]
    fn empty_patch_changes_nothing() {
        let original = obj(json!({"model": "m", "options": {}, "x": [1, 2]}));
        let mut body = original.clone();
        apply_patch(&mut body, &BodyPatch::default());
        assert_eq!(body, original);
    }
}
