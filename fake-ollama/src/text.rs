//! Deterministic content for the fake: answer words, JSON answers, schema-filled tool arguments,
//! embedding vectors, digests, ids and RFC 3339 timestamps. Pure functions of their inputs (the
//! timestamps of the time given), so tests can assert exact output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_core::rng::{fnv1a, mix, Rng, FNV_OFFSET};
use serde_json::{Map, Value};

/// The vocabulary of generated answers, each with its leading space (the first word of an answer
/// drops it). Plain lowercase ASCII, so no piece ever needs JSON escaping.
const WORDS: [&str; 64] = [
    " the",
    " sky",
    " is",
    " blue",
    " because",
    " of",
    " rayleigh",
    " scattering",
    " light",
    " waves",
    " short",
    " long",
    " air",
    " molecules",
    " sun",
    " red",
    " evening",
    " morning",
    " we",
    " see",
    " more",
    " than",
    " a",
    " an",
    " and",
    " or",
    " but",
    " so",
    " it",
    " that",
    " this",
    " with",
    " from",
    " into",
    " over",
    " under",
    " bright",
    " dark",
    " warm",
    " cold",
    " river",
    " stone",
    " cloud",
    " rain",
    " wind",
    " field",
    " road",
    " city",
    " night",
    " day",
    " quiet",
    " simple",
    " model",
    " answer",
    " token",
    " stream",
    " herd",
    " llama",
    " fast",
    " slow",
    " green",
    " gold",
    " silver",
    " paris",
];

/// Dimension of every embedding vector (nomic-embed-text's).
pub(crate) const EMBEDDING_DIM: usize = 768;

/// A stable seed for everything generated from `text` (the prompt).
pub(crate) fn seed_of(text: &str) -> u64 {
    fnv1a(FNV_OFFSET, text.as_bytes())
}

/// Word `i` of the answer seeded by `seed`; word 0 has no leading space.
pub(crate) fn word(seed: u64, i: usize) -> &'static str {
    let w = WORDS[(mix(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % WORDS.len() as u64) as usize];
    if i == 0 {
        &w[1..]
    } else {
        w
    }
}

/// `n` words of the answer seeded by `seed`, concatenated (what a client reassembles).
#[cfg(test)]
pub(crate) fn sentence(seed: u64, n: usize) -> String {
    (0..n).map(|i| word(seed, i)).collect()
}

/// The JSON-mode answer split into at most `n` pieces (at least one): `{"answer":"w0 w1 ..."}`
/// for `format: "json"`, or the schema filled as for tool arguments for a schema object. The
/// concatenation of the pieces is always one valid JSON object.
pub(crate) fn json_pieces(seed: u64, n: usize, schema: Option<&Value>) -> Vec<String> {
    let n = n.max(1);
    let text = match schema {
        Some(s @ Value::Object(_)) if s.get("properties").is_some() => fill(s, 0).to_string(),
        _ => {
            let mut t = String::from("{\"answer\":\"");
            for i in 0..n {
                t.push_str(word(seed, i));
            }
            t.push_str("\"}");
            t
        }
    };
    split_chars(&text, n)
}

/// Splits `text` into at most `n` non-empty pieces of about equal length at char boundaries.
fn split_chars(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.clamp(1, chars.len().max(1));
    let mut pieces = Vec::with_capacity(n);
    for k in 0..n {
        let (a, b) = (k * chars.len() / n, (k + 1) * chars.len() / n);
        pieces.push(chars[a..b].iter().collect());
    }
    pieces
}

/// Arguments for a call to a tool whose JSON schema is `parameters`: an object with every
/// `required` property filled by [`fill`] (strings "Paris", numbers 1, booleans true, the first
/// `enum` value, ...). Without `required`, an empty object.
pub(crate) fn tool_arguments(parameters: Option<&Value>) -> Value {
    match parameters {
        Some(p) => fill_object(p, 0),
        None => Value::Object(Map::new()),
    }
}

/// The object schema `schema` with its required properties filled.
fn fill_object(schema: &Value, depth: u32) -> Value {
    let mut out = Map::new();
    let props = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let prop = props.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
        out.insert(name.to_string(), fill(prop, depth + 1));
    }
    Value::Object(out)
}

/// A value matching `schema`, as simple as possible; depth-limited against recursive schemas.
fn fill(schema: &Value, depth: u32) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return fill(first, depth + 1);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "number" | "integer" => Value::from(1),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        "array" => Value::Array(vec![fill(schema.get("items").unwrap_or(&Value::Null), depth + 1)]),
        "object" if schema.get("properties").is_some() && schema.get("required").is_none() => {
            // A structured-output schema usually lists no `required`: fill every property.
            let mut out = Map::new();
            for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                out.insert(name.clone(), fill(prop, depth + 1));
            }
            Value::Object(out)
        }
        "object" => fill_object(schema, depth),
        _ => Value::String("Paris".into()),
    }
}

/// A unit-length (L2) vector for `text`, the same every time; `dims` in `1..768` truncates the
/// 768-dimensional vector and normalises it again, as Ollama's `dimensions` does.
pub(crate) fn embedding(text: &str, dims: Option<usize>) -> Vec<f32> {
    let mut rng = Rng::new(seed_of(text));
    let n = match dims {
        Some(d) if d > 0 && d < EMBEDDING_DIM => d,
        _ => EMBEDDING_DIM,
    };
    let mut v: Vec<f32> = (0..EMBEDDING_DIM).map(|_| (rng.unit() * 2.0 - 1.0) as f32).take(n).collect();
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
    v
}

/// 64 hex digits naming `name` (a stand-in for a blob's SHA-256).
pub(crate) fn digest(name: &str) -> String {
    let mut h = seed_of(name);
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        h = mix(h.wrapping_add(0x9E37_79B9_7F4A_7C15));
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// A tool-call id like Ollama's, `call_` and 8 lowercase letters and digits, from `seed`.
pub(crate) fn call_id(seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut h = mix(seed);
    let mut id = String::from("call_");
    for _ in 0..8 {
        id.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
    }
    id
}

/// Unix seconds of `t` (0 before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// `t` as RFC 3339 in UTC with up to 9 fractional digits, trailing zeros trimmed, as Go prints
/// a `time.Time` (`2025-05-01T10:00:00.123456789Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(32);
    write_rfc3339(&mut out, t);
    out
}

/// Appends [`rfc3339`] of `t` to `out`.
pub(crate) fn write_rfc3339(out: &mut String, t: SystemTime) {
    use std::fmt::Write as _;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(out, "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let mut digits = [b'0'; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let len = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push('.');
        out.extend(digits[..len].iter().map(|&d| d as char));
    }
    out.push('Z');
}

/// Year, month, day of the civil date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_are_deterministic_and_spaced() {
        let s = seed_of("why is the sky blue?");
        assert_eq!(sentence(s, 12), sentence(s, 12));
        assert_ne!(sentence(s, 12), sentence(seed_of("other"), 12));
        assert!(!word(s, 0).starts_with(' '));
        assert!((1..50).all(|i| word(s, i).starts_with(' ') && word(s, i).len() > 1));
        assert_eq!(sentence(s, 7).split(' ').count(), 7);
    }

    #[test]
    fn json_answers_parse() {
        for n in [1, 2, 5, 24] {
            let pieces = json_pieces(7, n, None);
            assert!(pieces.len() <= n && !pieces.is_empty());
            let v: Value = serde_json::from_str(&pieces.concat()).unwrap();
            assert!(v["answer"].is_string());
        }
        let schema = json!({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}}});
        let v: Value = serde_json::from_str(&json_pieces(7, 4, Some(&schema)).concat()).unwrap();
        assert_eq!(v, json!({"age": 1, "name": "Paris"}));
    }

    #[test]
    fn tool_arguments_fill_required_properties() {
        let params = json!({"type":"object","properties":{
            "city":{"type":"string"},"days":{"type":"integer"},"metric":{"type":"boolean"},
            "unit":{"type":"string","enum":["celsius","fahrenheit"]},"lat":{"type":["number","null"]},
            "tags":{"type":"array","items":{"type":"string"}},"optional":{"type":"string"},
            "where":{"type":"object","properties":{"zip":{"type":"string"}},"required":["zip"]}},
            "required":["city","days","metric","unit","lat","tags","where"]});
        assert_eq!(
            tool_arguments(Some(&params)),
            json!({"city":"Paris","days":1,"metric":true,"unit":"celsius","lat":1,"tags":["Paris"],
                   "where":{"zip":"Paris"}})
        );
        assert_eq!(tool_arguments(None), json!({}));
        assert_eq!(tool_arguments(Some(&json!({"type":"object","properties":{"a":{}}}))), json!({}));
        let anyof = json!({"properties":{"x":{"anyOf":[{"type":"number"},{"type":"string"}]}},"required":["x"]});
        assert_eq!(tool_arguments(Some(&anyof)), json!({"x": 1}));
    }

    #[test]
    fn embeddings_are_unit_and_deterministic() {
        let a = embedding("hello", None);
        assert_eq!(a.len(), EMBEDDING_DIM);
        assert_eq!(a, embedding("hello", None));
        assert_ne!(a, embedding("hello!", None));
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm(&a) - 1.0).abs() < 1e-5);
        let short = embedding("hello", Some(2));
        assert_eq!(short.len(), 2);
        assert!((norm(&short) - 1.0).abs() < 1e-5);
        // Truncation keeps the direction of the leading components.
        assert!((short[0] / short[1] - a[0] / a[1]).abs() < 1e-3);
    }

    #[test]
    fn timestamps_and_ids() {
        let t = UNIX_EPOCH + Duration::new(1_746_093_600, 123_400_000);
        assert_eq!(rfc3339(t), "2025-05-01T10:00:00.1234Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(unix_secs(t), 1_746_093_600);
        let d = digest("qwen3:8b");
        assert_eq!(d.len(), 64);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(d, digest("qwen3:8b"));
        let id = call_id(42);
        assert!(id.starts_with("call_") && id.len() == 13);
    }
}
