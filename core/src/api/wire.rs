//! Wire pieces shared by several surfaces: herd's own body fields, what a chat message offers the
//! estimate, string-or-parts content, string-or-list input, the native `think` value and the
//! native `options` map with typed accessors.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::estimate::TokenTally;
use super::ApiError;

/// herd's own top-level body fields, which no backend knows: the one list the body index,
/// the patch and the checks read.
pub const HERD_FIELDS: [&str; 2] = ["fallback_models", "fallback"];
/// herd's field inside `metadata` (`metadata.tags`); `metadata` itself may be the API's own.
pub const HERD_METADATA_FIELD: (&str, &str) = ("metadata", "tags");

/// herd's own body fields, accepted on every surface and flattened into each request type (before
/// its `extra`, so they never land there). [`super::patch::BodyPatch::strip_herd_fields`] removes
/// them before a body is forwarded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HerdFields {
    /// herd: the client's own fallback models, in order of preference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_models: Option<Vec<String>>,
    /// herd: allow (`true`) or forbid (`false`) VRAM-aware substitution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,
    /// `metadata`: herd reads its `tags` (and, on Anthropic, its `user_id`). On the OpenAI and
    /// Anthropic surfaces it is also the API's own field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A chat message of the native or OpenAI surface, as the token estimate and the prefix key read
/// it.
pub trait ChatTurn {
    /// The role as sent (`system`, `user`, `assistant`, `tool`, ...).
    fn role(&self) -> Option<&str>;

    /// The message's texts (not reasoning or tool calls), in order.
    fn texts(&self) -> Vec<&str>;

    /// Number of images attached.
    fn image_count(&self) -> usize;

    /// Adds this message to a token tally.
    fn tally(&self, t: &mut TokenTally);

    /// Whether the role is `system` (any case).
    fn is_system(&self) -> bool {
        self.role().is_some_and(|r| r.eq_ignore_ascii_case("system"))
    }
}

/// Message content that is either a plain string or a list of typed parts (OpenAI content parts,
/// Anthropic content blocks, Anthropic `system`).
#[derive(Clone, Debug, PartialEq)]
pub enum Content<P> {
    /// `"content": "hello"`.
    Text(String),
    /// `"content": [{"type": "text", ...}, ...]`.
    Parts(Vec<P>),
}

impl<P> Content<P> {
    /// The parts, or an empty slice for plain text.
    pub fn parts(&self) -> &[P] {
        match self {
            Content::Text(_) => &[],
            Content::Parts(parts) => parts,
        }
    }
}

impl<P: Serialize> Serialize for Content<P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => text.serialize(s),
            Content::Parts(parts) => parts.serialize(s),
        }
    }
}

impl<'de, P: DeserializeOwned> Deserialize<'de> for Content<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Decoded by hand rather than `untagged` so that a bad part reports its own error instead
        // of "data did not match any variant".
        match Value::deserialize(d)? {
            Value::String(text) => Ok(Content::Text(text)),
            Value::Array(items) => items
                .into_iter()
                .map(|item| serde_json::from_value(item).map_err(D::Error::custom))
                .collect::<Result<Vec<P>, _>>()
                .map(Content::Parts),
            other => Err(D::Error::custom(format_args!(
                "invalid type: {}, expected a string or an array of content parts",
                json_type(&other)
            ))),
        }
    }
}

/// An input that is one string or a batch of strings (`/api/embed` and `/v1/embeddings` `input`,
/// `/v1/completions` `prompt`). Token arrays are refused, as Ollama refuses them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TextInput {
    /// A single string.
    One(String),
    /// A batch of strings.
    Batch(Vec<String>),
}

impl TextInput {
    /// The strings, in order.
    pub fn texts(&self) -> &[String] {
        match self {
            TextInput::One(text) => std::slice::from_ref(text),
            TextInput::Batch(texts) => texts,
        }
    }
}

/// The native `think` value: a bool or a level (`"low" | "medium" | "high" | "max"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Think {
    /// `true` (treated by Ollama as `"medium"`) or `false`.
    Bool(bool),
    /// A level string, passed through as sent.
    Level(String),
}

impl Think {
    /// The levels Ollama accepts.
    pub const LEVELS: [&'static str; 4] = ["low", "medium", "high", "max"];

    /// Whether this asks for thinking.
    ///
    /// # Errors
    /// [`ApiError::InvalidValue`] for a level Ollama would refuse with 400 `invalid think value`.
    pub fn enabled(&self) -> Result<bool, ApiError> {
        match self {
            Think::Bool(on) => Ok(*on),
            Think::Level(level) if Think::LEVELS.contains(&level.as_str()) => Ok(true),
            Think::Level(level) => {
                Err(ApiError::InvalidValue { field: "think", value: Value::String(level.clone()).to_string() })
            }
        }
    }
}

/// The native `options` object (wire-api.md §4), kept as the client sent it. Typed accessors read
/// the entries the router needs; everything else passes through untouched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Options(pub Map<String, Value>);

impl Options {
    /// `num_ctx`: the context window asked for. Absent, `null` or not positive means "server
    /// default" (`None`). Floats are truncated as Ollama does; huge values saturate.
    ///
    /// # Errors
    /// [`ApiError::WrongOptionType`] when the value is not a number.
    pub fn num_ctx(&self) -> Result<Option<u32>, ApiError> {
        Ok(int_option(&self.0, "num_ctx")?.and_then(positive_u32))
    }

    /// `num_predict` as sent: `-1` means unlimited and `-2` "fill the context".
    ///
    /// # Errors
    /// [`ApiError::WrongOptionType`] when the value is not a number.
    pub fn num_predict(&self) -> Result<Option<i64>, ApiError> {
        int_option(&self.0, "num_predict")
    }

    /// `num_predict` as an output budget: `None` when absent or negative (unlimited).
    ///
    /// # Errors
    /// [`ApiError::WrongOptionType`] when the value is not a number.
    pub fn output_budget(&self) -> Result<Option<u32>, ApiError> {
        Ok(self.num_predict()?.and_then(|n| (n >= 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))))
    }
}

/// Reads an integer option the way Ollama does: integers as they are, floats truncated.
fn int_option(options: &Map<String, Value>, key: &'static str) -> Result<Option<i64>, ApiError> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(if let Some(i) = n.as_i64() {
            i
        } else if n.as_u64().is_some() {
            i64::MAX
        } else {
            // `as` truncates toward zero and saturates, as Go's float-to-int conversion of an
            // in-range value does.
            n.as_f64().map_or(0, |f| f as i64)
        })),
        Some(_) => Err(ApiError::WrongOptionType { option: key, expected: "integer" }),
    }
}

/// `n` as a positive `u32`, saturating; `None` when zero or negative.
fn positive_u32(n: i64) -> Option<u32> {
    (n > 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

/// The JSON type name of `v`, for error details.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Decodes a `{"type": ...}`-tagged object whose `type` has been matched: removes `type` and
/// decodes the rest into the variant's struct.
pub(crate) fn untag<T: DeserializeOwned, E: serde::de::Error>(mut map: Map<String, Value>) -> Result<T, E> {
    map.remove("type");
    serde_json::from_value(Value::Object(map)).map_err(E::custom)
}

/// Serialises a variant's struct with `"type": kind` added, the inverse of [`untag`].
pub(crate) fn tag<T: Serialize, S: Serializer>(kind: &str, inner: &T, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    match serde_json::to_value(inner).map_err(S::Error::custom)? {
        Value::Object(mut map) => {
            map.insert("type".to_string(), Value::String(kind.to_string()));
            map.serialize(s)
        }
        _ => Err(S::Error::custom("a tagged part must serialise to an object")),
    }
}

/// Implements `Serialize` and `Deserialize` for a content-part enum whose objects are told apart by
/// their `type` (OpenAI content parts, Anthropic blocks): each listed `type` decodes into its
/// variant's struct ([`untag`]) and encodes back with the `type` added ([`tag`]); any other object
/// is kept whole, verbatim, in the enum's `Other` variant.
macro_rules! typed_parts {
    ($enum:ident { $($kind:literal => $variant:ident),+ $(,)? }) => {
        impl ::serde::Serialize for $enum {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $($enum::$variant(p) => $crate::api::wire::tag($kind, p, s),)+
                    $enum::Other(map) => ::serde::Serialize::serialize(map, s),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $enum {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let map = <::serde_json::Map<String, ::serde_json::Value> as ::serde::Deserialize>::deserialize(d)?;
                match map.get("type").and_then(::serde_json::Value::as_str) {
                    $(Some($kind) => $crate::api::wire::untag(map).map($enum::$variant),)+
                    _ => Ok($enum::Other(map)),
                }
            }
        }
    };
}
pub(crate) use typed_parts;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(v: Value) -> Options {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn num_ctx_accessor() {
        assert_eq!(options(json!({"num_ctx": 2048})).num_ctx(), Ok(Some(2048)));
        assert_eq!(options(json!({"num_ctx": 8192.9})).num_ctx(), Ok(Some(8192)));
        assert_eq!(options(json!({"num_ctx": 0})).num_ctx(), Ok(None));
        assert_eq!(options(json!({"num_ctx": -5})).num_ctx(), Ok(None));
        assert_eq!(options(json!({"num_ctx": null})).num_ctx(), Ok(None));
        assert_eq!(options(json!({})).num_ctx(), Ok(None));
        assert_eq!(options(json!({"num_ctx": 1e30})).num_ctx(), Ok(Some(u32::MAX)));
        assert_eq!(options(json!({"num_ctx": u64::MAX})).num_ctx(), Ok(Some(u32::MAX)));
        assert_eq!(
            options(json!({"num_ctx": "big"})).num_ctx(),
            Err(ApiError::WrongOptionType { option: "num_ctx", expected: "integer" })
        );
    }

    #[test]
    fn num_predict_accessors() {
        let o = options(json!({"num_predict": -1, "top_p": 0.9}));
        assert_eq!(o.num_predict(), Ok(Some(-1)));
        assert_eq!(o.output_budget(), Ok(None));
        let o = options(json!({"num_predict": 512}));
        assert_eq!(o.output_budget(), Ok(Some(512)));
        let o = options(json!({"num_predict": 0}));
        assert_eq!(o.output_budget(), Ok(Some(0)));
        let o = options(json!({"num_predict": 1e12}));
        assert_eq!(o.output_budget(), Ok(Some(u32::MAX)));
        assert!(options(json!({"num_predict": [1]})).output_budget().is_err());
    }

    #[test]
    fn think_values() {
        let t: Think = serde_json::from_value(json!(true)).unwrap();
        assert_eq!(t.enabled(), Ok(true));
        let t: Think = serde_json::from_value(json!("high")).unwrap();
        assert_eq!(t.enabled(), Ok(true));
        let t: Think = serde_json::from_value(json!(false)).unwrap();
        assert_eq!(t.enabled(), Ok(false));
        let t: Think = serde_json::from_value(json!("x")).unwrap();
        assert_eq!(t.enabled(), Err(ApiError::InvalidValue { field: "think", value: "\"x\"".into() }));
        assert!(serde_json::from_value::<Think>(json!(1)).is_err());
    }

    #[test]
    fn content_is_text_or_parts() {
        let c: Content<Value> = serde_json::from_value(json!("hi")).unwrap();
        assert_eq!(c, Content::Text("hi".into()));
        assert!(c.parts().is_empty());
        let c: Content<Value> = serde_json::from_value(json!([{"type": "text"}])).unwrap();
        assert_eq!(c.parts().len(), 1);
        let err = serde_json::from_value::<Content<Value>>(json!(5)).unwrap_err();
        assert!(err.to_string().contains("expected a string or an array"));
        assert_eq!(serde_json::to_value(&c).unwrap(), json!([{"type": "text"}]));
    }

    #[test]
    fn text_input() {
        let i: TextInput = serde_json::from_value(json!("hello")).unwrap();
        assert_eq!(i.texts(), ["hello".to_string()]);
        let i: TextInput = serde_json::from_value(json!(["a", "b"])).unwrap();
        assert_eq!(i.texts().len(), 2);
        assert!(serde_json::from_value::<TextInput>(json!([1, 2])).is_err());
    }
}
