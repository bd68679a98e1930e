//! A request body kept as the client sent it: validated once, measured against [`BodyLimits`],
//! indexed by top-level field, decoded straight from its bytes, and patched by splicing the
//! fields the router changes into the client's bytes. No tree of the whole body is ever built,
//! so the router's memory follows the body's bytes, not what its JSON would expand to: a 32 MB
//! body of a million one-letter messages is refused by count before anything is allocated for
//! them, and an accepted body costs its bytes, one typed copy while it is described (dropped
//! before routing) and one patched copy per attempt.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::patch::{apply_patch, BodyPatch};
use super::ApiError;

/// Bounds on what one request body may hold besides its size. The defaults are far above what
/// real clients send (a long agent session has a few thousand messages) and keep the typed copy
/// of an accepted body within a few MB of its bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BodyLimits {
    /// Most entries in `messages`. Default 10,000.
    pub max_messages: usize,
    /// Most content parts over all messages (`content` array entries, `images`). Default 50,000.
    pub max_parts: usize,
    /// Most JSON values (every scalar, array and object) in the whole body. Default 200,000.
    pub max_values: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits { max_messages: 10_000, max_parts: 50_000, max_values: 200_000 }
    }
}

impl BodyLimits {
    /// No limits (a body the router built itself).
    pub const UNLIMITED: BodyLimits =
        BodyLimits { max_messages: usize::MAX, max_parts: usize::MAX, max_values: usize::MAX };
}

/// What a body holds, as counted against [`BodyLimits`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyShape {
    /// JSON values in the whole body.
    pub values: usize,
    /// Entries of the top-level `messages` array.
    pub messages: usize,
    /// Content parts over all messages.
    pub parts: usize,
}

/// The top-level fields of a body: each name and the byte range of its value, in the order sent,
/// one entry per name (the last one sent wins, as in every JSON decoder herd talks to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyIndex {
    fields: Vec<(String, Range<usize>)>,
    duplicates: bool,
}

impl BodyIndex {
    /// Validates `body` as one JSON object within `limits` and indexes its top-level fields.
    ///
    /// # Errors
    /// [`ApiError::EmptyBody`], [`ApiError::MalformedJson`], [`ApiError::NotAnObject`], or
    /// [`ApiError::TooMany`] when a count is over its limit (counting stops there).
    pub fn new(body: &[u8], limits: &BodyLimits) -> Result<BodyIndex, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::EmptyBody);
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let fields = FieldsSeed { max: limits.max_values }.deserialize(&mut de).and_then(|f| de.end().map(|()| f));
        let fields = fields.map_err(|e| match e.classify() {
            serde_json::error::Category::Data if e.to_string().starts_with(TOO_MANY_FIELDS) => {
                ApiError::TooMany { what: "JSON values", limit: limits.max_values }
            }
            _ => ApiError::from_body_error(&e),
        })?;
        // Every value, message or part takes at least two bytes (`1,`): a body shorter than twice
        // the smallest limit cannot go over any, and is not counted.
        let smallest = limits.max_values.min(limits.max_messages).min(limits.max_parts);
        if body.len() / 2 >= smallest {
            let mut tally =
                Tally { shape: BodyShape { values: 1, ..BodyShape::default() }, limits: *limits, over: None };
            tally.walk(&fields).map_err(|e| tally.over.take().unwrap_or_else(|| ApiError::from_body_error(&e)))?;
        }
        // One entry per name, the last one sent, in the order sent (a sorted copy of the names
        // finds repeats in n log n; bodies have a handful of fields).
        let mut names: Vec<(&str, usize)> = fields.0.iter().enumerate().map(|(i, (k, _))| (k.as_ref(), i)).collect();
        names.sort_unstable();
        let duplicates = names.windows(2).any(|w| w[0].0 == w[1].0);
        let keep = |i: usize| {
            !duplicates || {
                let name = fields.0[i].0.as_ref();
                let at = names.partition_point(|(n, _)| *n <= name);
                names[at - 1].1 == i
            }
        };
        let base = body.as_ptr() as usize;
        let fields = fields
            .0
            .iter()
            .enumerate()
            .filter(|&(i, _)| keep(i))
            .map(|(_, (key, raw))| {
                let start = raw.get().as_ptr() as usize - base;
                (key.to_string(), start..start + raw.get().len())
            })
            .collect();
        Ok(BodyIndex { fields, duplicates })
    }

    /// The byte range of field `name`'s value.
    pub fn range(&self, name: &str) -> Option<Range<usize>> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, r)| r.clone())
    }

    /// Whether the body has field `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == name)
    }

    /// Field `name` parsed as a JSON value (for the small fields the router reads or changes).
    pub fn value(&self, body: &[u8], name: &str) -> Option<Value> {
        self.range(name).and_then(|r| serde_json::from_slice(&body[r]).ok())
    }

    /// Decodes the body into request type `T`, straight from its bytes.
    ///
    /// # Errors
    /// [`ApiError::WrongFieldType`] naming the first top-level field (in name order) that does not
    /// decode, exactly as [`super::decode`] does.
    pub fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ApiError> {
        let whole = if self.duplicates {
            serde_json::from_slice(&self.splice(body, &[]))
        } else {
            serde_json::from_slice(body)
        };
        whole.or_else(|_| {
            // Straight from the bytes, a repeated name inside a nested object is an error, where
            // every JSON decoder herd talks to keeps the last one; and serde's message does not
            // say which field failed. Only then is the body read as a tree (within the limits
            // the index was built with), which decides both as before.
            let object = super::parse_body(body)?;
            super::decode::<T>(&object)
        })
    }

    /// Whether the body carries herd's own fields (`fallback_models`, `fallback`,
    /// `metadata.tags`), which no backend knows.
    pub fn has_herd_fields(&self, body: &[u8]) -> bool {
        let (outer, inner) = super::wire::HERD_METADATA_FIELD;
        super::wire::HERD_FIELDS.iter().any(|f| self.contains(f))
            || self.value(body, outer).is_some_and(|m| m.get(inner).is_some())
    }

    /// The body with `patch` applied: the fields the patch touches are parsed, patched with
    /// [`apply_patch`] and written after the others, which are copied as the client sent them.
    pub fn patched(&self, body: &[u8], patch: &BodyPatch) -> Vec<u8> {
        let mut touched: Vec<&str> = Vec::new();
        if patch.model.is_some() {
            touched.push("model");
        }
        if patch.num_ctx.is_some() || patch.num_predict.is_some() {
            touched.push("options");
        }
        if patch.max_tokens.is_some() {
            touched.push("max_tokens");
        }
        if patch.keep_alive.is_some() {
            touched.push("keep_alive");
        }
        if patch.force_stream.is_some() {
            touched.push("stream");
        }
        if patch.strip_herd_fields {
            touched.extend(super::wire::HERD_FIELDS);
            touched.push(super::wire::HERD_METADATA_FIELD.0);
        }
        let mut small = Map::new();
        for name in &touched {
            if let Some(v) = self.value(body, name) {
                small.insert((*name).to_string(), v);
            }
        }
        apply_patch(&mut small, patch);
        let mut out = self.splice(body, &touched);
        out.pop();
        let mut first = out.len() == 1;
        for (k, v) in &small {
            if !first {
                out.push(b',');
            }
            first = false;
            let _ = serde_json::to_writer(&mut *push_key(&mut out, k), v);
        }
        out.push(b'}');
        out
    }

    /// The object without the fields named in `skip`, every other field as sent.
    pub fn without(&self, body: &[u8], skip: &[&str]) -> Vec<u8> {
        self.splice(body, skip)
    }

    /// The object with every field but those in `skip`, as sent (duplicates dropped).
    fn splice(&self, body: &[u8], skip: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 64);
        out.push(b'{');
        let mut first = true;
        for (k, r) in self.fields.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
            if !first {
                out.push(b',');
            }
            first = false;
            push_field(&mut out, k, &body[r.clone()]);
        }
        out.push(b'}');
        out
    }
}

/// Writes `"key":value`.
fn push_field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    push_key(out, key).extend_from_slice(value);
}

/// Writes `"key":` (the name escaped as JSON).
fn push_key<'a>(out: &'a mut Vec<u8>, key: &str) -> &'a mut Vec<u8> {
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    out
}

/// The top-level object as (name, raw value) pairs in order.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// The start of the error [`FieldsSeed`] stops with at its limit.
const TOO_MANY_FIELDS: &str = "too many top-level fields";

/// Reads [`Fields`], at most `max` of them (each is a JSON value, and an index entry).
struct FieldsSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed {
    type Value = Fields<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if out.len() >= self.max {
                return Err(de::Error::custom(TOO_MANY_FIELDS));
            }
            out.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(Fields(out))
    }
}

/// Where a value sits, as far as the limits care.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Place {
    /// Anywhere else.
    Other,
    /// The top-level `messages` array.
    Messages,
    /// One entry of `messages`.
    Message,
    /// A message's `content` or `images` array: its entries are parts.
    Parts,
}

impl Place {
    fn top(key: &str) -> Place {
        if key == "messages" {
            Place::Messages
        } else {
            Place::Other
        }
    }
}

struct Tally {
    shape: BodyShape,
    limits: BodyLimits,
    over: Option<ApiError>,
}

impl Tally {
    /// Counts every value under the top-level fields.
    fn walk(&mut self, fields: &Fields<'_>) -> Result<(), serde_json::Error> {
        for (key, raw) in &fields.0 {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            (Count { parent: Place::Other, place: Place::top(key), tally: &mut *self }).deserialize(&mut de)?;
        }
        Ok(())
    }

    /// Counts one value whose container is `parent`.
    fn value<E: de::Error>(&mut self, parent: Place) -> Result<(), E> {
        self.shape.values += 1;
        if parent == Place::Messages {
            self.shape.messages += 1;
        }
        if parent == Place::Parts {
            self.shape.parts += 1;
        }
        let l = self.limits;
        let over = [
            ("JSON values", self.shape.values, l.max_values),
            ("messages", self.shape.messages, l.max_messages),
            ("content parts", self.shape.parts, l.max_parts),
        ]
        .into_iter()
        .find(|(_, n, max)| n > max);
        match over {
            Some((what, _, limit)) => {
                self.over = Some(ApiError::TooMany { what, limit });
                Err(E::custom("over a limit"))
            }
            None => Ok(()),
        }
    }
}

/// Walks one value without keeping anything, counting it and what it holds.
struct Count<'t> {
    /// Where its container is.
    parent: Place,
    /// Where it is.
    place: Place,
    tally: &'t mut Tally,
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.tally.value::<D::Error>(self.parent)?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = match self.place {
            Place::Messages => Place::Message,
            _ => Place::Other,
        };
        while seq.next_element_seed(Count { parent: self.place, place: child, tally: &mut *self.tally })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let child = match (self.place, key.as_ref()) {
                (Place::Message, "content" | "images") => Place::Parts,
                _ => Place::Other,
            };
            map.next_value_seed(Count { parent: Place::Other, place: child, tally: &mut *self.tally })?;
        }
        Ok(())
    }
}

/// Counts what `body` holds (for benchmarks and tests); `None` when it is not JSON.
pub fn shape_of(body: &[u8]) -> Option<BodyShape> {
    let mut tally =
        Tally { shape: BodyShape { values: 1, ..BodyShape::default() }, limits: BodyLimits::UNLIMITED, over: None };
    let fields = FieldsSeed { max: usize::MAX }.deserialize(&mut serde_json::Deserializer::from_slice(body)).ok()?;
    tally.walk(&fields).ok()?;
    Some(tally.shape)
}

/// Checks that the index agrees with parsing the whole body into a `serde_json` object (the way
/// the router read bodies before): whatever that parse accepts the index accepts, every surface
/// describes the body the same way, and [`BodyIndex::patched`] gives the object [`apply_patch`]
/// gives. For the fuzz target and the property tests.
///
/// # Errors
/// The first disagreement, described.
#[cfg(any(test, feature = "testing"))]
pub fn check_index_agrees(data: &[u8], patch: &BodyPatch) -> Result<(), String> {
    use super::{describe_indexed, describe_object, parse_body, DescribeContext, Surface};
    let Ok(mut object) = parse_body(data) else { return Ok(()) };
    let index =
        BodyIndex::new(data, &BodyLimits::UNLIMITED).map_err(|e| format!("index refused a JSON object: {e}"))?;
    let ctx = DescribeContext { client: Some("10.0.0.1".into()), ..DescribeContext::default() };
    for surface in Surface::ALL {
        let (a, b) = (describe_indexed(surface, data, &index, &ctx), describe_object(surface, &object, &ctx));
        if a != b {
            return Err(format!("{surface:?}: indexed {a:?} vs parsed {b:?}"));
        }
    }
    let patched: Value =
        serde_json::from_slice(&index.patched(data, patch)).map_err(|e| format!("patched body: {e}"))?;
    apply_patch(&mut object, patch);
    let object = Value::Object(object);
    if !same_json(&patched, &object) {
        return Err(format!("patched {patched} vs {object}"));
    }
    Ok(())
}

/// Equal JSON, numbers within a relative 1e-12: a float that went out as text and was read back
/// (a patched field) may differ from the one read once in its last bit (serde_json's float
/// parsing is not exact without `float_roundtrip`); the legacy path wrote the same text.
#[cfg(any(test, feature = "testing"))]
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::patch::NumCtxPatch;
    use crate::api::{ollama, openai};
    use crate::ids::ModelName;
    use serde_json::json;

    fn index(body: &str) -> Result<BodyIndex, ApiError> {
        BodyIndex::new(body.as_bytes(), &BodyLimits::default())
    }

    #[test]
    fn counts_values_messages_and_parts() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]},
                       {"role":"user","content":"b","images":["x","y"]}],"tools":[1,2]}"#;
        let s = shape_of(body.as_bytes()).unwrap();
        assert_eq!((s.messages, s.parts), (2, 4));
        // 1 object + model + messages array + 2 messages + (role, content array, 2 parts, 3 fields
        // inside them) + (role, content, images array, 2 images) + tools array + 2 numbers.
        assert_eq!(s.values, 1 + 1 + 1 + 2 + (1 + 1 + 2 + 3) + (1 + 1 + 1 + 2) + 1 + 2);
        assert_eq!(shape_of(b"{}").unwrap().values, 1);
    }

    #[test]
    fn limits_refuse_before_anything_is_kept() {
        let limits = BodyLimits { max_messages: 2, max_parts: 3, max_values: 40 };
        let three =
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"content":"c"}]}"#;
        let e = BodyIndex::new(three.as_bytes(), &limits).unwrap_err();
        assert_eq!(e, ApiError::TooMany { what: "messages", limit: 2 });
        assert_eq!(e.http_status(), 413);
        let parts = r#"{"messages":[{"content":[1,2]},{"images":["a","b"]}]}"#;
        assert_eq!(
            BodyIndex::new(parts.as_bytes(), &limits),
            Err(ApiError::TooMany { what: "content parts", limit: 3 })
        );
        let values = format!(r#"{{"model":"m","x":[{}]}}"#, vec!["1"; 40].join(","));
        assert_eq!(
            BodyIndex::new(values.as_bytes(), &limits),
            Err(ApiError::TooMany { what: "JSON values", limit: 40 })
        );
        let fields = format!("{{{}}}", (0..41).map(|i| format!(r#""k{i}":1"#)).collect::<Vec<_>>().join(","));
        assert_eq!(
            BodyIndex::new(fields.as_bytes(), &limits),
            Err(ApiError::TooMany { what: "JSON values", limit: 40 })
        );
        let ok = r#"{"messages":[{"content":[1,2]},{"images":["a"]}]}"#;
        assert!(BodyIndex::new(ok.as_bytes(), &limits).is_ok());
    }

    #[test]
    fn syntax_and_shape_errors_are_the_usual_ones() {
        assert_eq!(index("  "), Err(ApiError::EmptyBody));
        assert_eq!(index("[1]"), Err(ApiError::NotAnObject));
        assert!(matches!(index(r#"{"model": x}"#), Err(ApiError::MalformedJson { line: 1, column: 11, .. })));
        assert!(matches!(index(r#"{"model":"m"} x"#), Err(ApiError::MalformedJson { .. })));
        assert!(matches!(index(r#"{"messages":[{"content":"a"},]}"#), Err(ApiError::MalformedJson { .. })));
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(index(&deep), Err(ApiError::MalformedJson { .. })));
    }

    #[test]
    fn decode_names_the_failing_field_and_last_duplicate_wins() {
        let i = index(r#"{"model":"a","stream":"yes","model":"b"}"#).unwrap();
        let e = i.decode::<ollama::ChatRequest>(br#"{"model":"a","stream":"yes","model":"b"}"#).unwrap_err();
        assert!(matches!(e, ApiError::WrongFieldType { ref field, .. } if field == "stream"), "{e:?}");
        let body = br#"{"model":"a","stream":true,"model":"b"}"#;
        let i = BodyIndex::new(body, &BodyLimits::default()).unwrap();
        let req: ollama::ChatRequest = i.decode(body).unwrap();
        assert_eq!(req.model.as_deref(), Some("b"));
        let openai: openai::ChatRequest = index("{}").unwrap().decode(b"{}").unwrap();
        assert!(openai.messages.is_none());
    }

    #[test]
    fn a_repeated_name_inside_a_message_keeps_the_last_one() {
        // A fuzz finding: straight from the bytes serde refuses a repeated field, where the
        // JSON decoders herd talks to (and serde_json's own object) keep the last one.
        let body = br#"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#;
        let i = BodyIndex::new(body, &BodyLimits::default()).unwrap();
        let req: ollama::ChatRequest = i.decode(body).unwrap();
        assert_eq!(req.messages.unwrap()[0].content.as_deref(), Some("b"));
        let bad = br#"{"model":"m","messages":[{"role":"user","content":"a","content":[1]}]}"#;
        let i = BodyIndex::new(bad, &BodyLimits::default()).unwrap();
        assert_eq!(
            i.decode::<ollama::ChatRequest>(bad),
            crate::api::decode::<ollama::ChatRequest>(&crate::api::parse_body(bad).unwrap())
        );
        let crash = r#"{"model":"qwen3:8b","messages":[{"role":"systsystem","content":"be briem","content":"be brief"},{"role":"user","content":[{"type":"image_krl","imaTge_url":{"url":"data:image/png;base28,aGk="}}]}],"Max_completion_tokens":32,"stream_options":{"incluusage":true},"tools":[{"type":"function","ge_ufunction":{"name":"frl","imaTge_u":{}}}]}"#;
        assert_eq!(check_index_agrees(crash.as_bytes(), &BodyPatch::default()), Ok(()));
    }

    #[test]
    fn patched_keeps_every_other_field_as_sent() {
        let body = br#"{"model":"m", "messages":[{"role":"user","content":"h\u00e9"}],"options":{"top_p":0.5},
                        "fallback_models":["x"],"metadata":{"tags":["p"],"user":"u"},"format" : {"type":"object"}}"#;
        let i = BodyIndex::new(body, &BodyLimits::default()).unwrap();
        assert!(i.has_herd_fields(body));
        let patch = BodyPatch {
            model: Some(ModelName::new("qwen3:8b")),
            num_ctx: Some(NumCtxPatch::Set(8192)),
            force_stream: Some(true),
            strip_herd_fields: true,
            ..BodyPatch::default()
        };
        let out = i.patched(body, &patch);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(r#""content":"h\u00e9""#), "client bytes copied as sent: {text}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "hé"}], "stream": true,
                   "options": {"top_p": 0.5, "num_ctx": 8192}, "metadata": {"user": "u"},
                   "format": {"type": "object"}})
        );
        // The same result as patching the parsed object.
        let mut map: Map<String, Value> = serde_json::from_slice(body).unwrap();
        apply_patch(&mut map, &patch);
        assert_eq!(v, Value::Object(map));
        // Nothing to change: the object as sent.
        let plain = br#"{"a":1,"b":[2]}"#;
        let i = BodyIndex::new(plain, &BodyLimits::default()).unwrap();
        assert_eq!(i.patched(plain, &BodyPatch::default()), plain.to_vec());
        assert!(!i.has_herd_fields(plain));
    }
}
