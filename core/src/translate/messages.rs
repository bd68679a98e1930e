//! OpenAI chat messages → native ones (wire-api.md §6.1 "Message conversion"): list content,
//! `data:` images, http(s) images left for the adapter, tool calls with string arguments, and tool
//! results linked to their call by name.

use serde_json::{Map, Value};

use super::request::RemoteImage;
use super::RequestError;
use crate::api::ollama::Message;
use crate::api::openai::{ChatMessage, Part};
use crate::api::Content;

/// The translated conversation.
pub(super) struct Converted {
    pub messages: Vec<Message>,
    pub remote: Vec<RemoteImage>,
}

/// Translates every message; `remote` lists the http(s) images, whose slots in `images` hold
/// empty strings until resolved.
pub(super) fn convert_messages(messages: Vec<ChatMessage>) -> Result<Converted, RequestError> {
    let mut out = Converted { messages: Vec::with_capacity(messages.len()), remote: Vec::new() };
    // (call id, function name) of every assistant tool call so far, for `tool` messages.
    let mut calls: Vec<(String, String)> = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        let converted = convert(i, m, out.messages.len(), &mut out.remote, &mut calls)?;
        out.messages.push(converted);
    }
    Ok(out)
}

fn convert(
    i: usize,
    m: ChatMessage,
    position: usize,
    remote: &mut Vec<RemoteImage>,
    calls: &mut Vec<(String, String)>,
) -> Result<Message, RequestError> {
    let ChatMessage { role, content, name, tool_calls, tool_call_id, mut extra } = m;
    let role = role.map(|r| if r.eq_ignore_ascii_case("developer") { "system".to_string() } else { r });
    let is_tool = role.as_deref().is_some_and(|r| r.eq_ignore_ascii_case("tool"));
    let mut out = Message { role, ..Message::default() };
    match content {
        Some(Content::Text(text)) => out.content = Some(text),
        Some(Content::Parts(parts)) => parts_into(i, parts, position, &mut out, remote)?,
        None if tool_calls.is_some() => {}
        None => return Err(RequestError::NullContent { message: i }),
    }
    if let Some(list) = tool_calls {
        let converted = list.into_iter().enumerate().map(|(j, call)| tool_call(i, j, call, calls));
        out.tool_calls = Some(converted.collect::<Result<_, _>>()?);
    }
    if is_tool {
        let by_id = |id: &String| calls.iter().rev().find(|(c, _)| c == id).map(|(_, name)| name.clone());
        out.tool_name = name.or_else(|| tool_call_id.as_ref().and_then(by_id));
        out.tool_call_id = tool_call_id;
    }
    for key in ["reasoning", "reasoning_content"] {
        if let Some(Value::String(thinking)) = extra.remove(key) {
            out.thinking.get_or_insert(thinking);
        }
    }
    Ok(out)
}

/// Puts a list of parts into one native message: texts joined with `\n`, images and audio in
/// order in `images`.
fn parts_into(
    i: usize,
    parts: Vec<Part>,
    position: usize,
    out: &mut Message,
    remote: &mut Vec<RemoteImage>,
) -> Result<(), RequestError> {
    let mut texts: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    for (j, part) in parts.into_iter().enumerate() {
        match part {
            Part::Text(p) => texts.push(p.text),
            Part::ImageUrl(p) => match image_source(p.image_url.url()) {
                ImageSource::Inline(data) => images.push(data.to_string()),
                ImageSource::Remote => {
                    let url = p.image_url.url().to_string();
                    remote.push(RemoteImage { url, message: position, slot: images.len() });
                    images.push(String::new());
                }
                ImageSource::Invalid => return Err(RequestError::InvalidImage { message: i, part: j }),
            },
            Part::InputAudio(p) => match p.input_audio.get("data").and_then(Value::as_str) {
                Some(data) => images.push(data.to_string()),
                None => return Err(RequestError::InvalidAudio { message: i, part: j }),
            },
            Part::Other(map) => {
                let kind = match map.get("type") {
                    Some(Value::String(t)) => t.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                return Err(RequestError::UnknownPart { message: i, part: j, kind });
            }
        }
    }
    out.content = Some(texts.join("\n"));
    if !images.is_empty() {
        out.images = Some(images);
    }
    Ok(())
}

/// Where an `image_url` points.
#[derive(Debug, PartialEq, Eq)]
enum ImageSource<'a> {
    /// The base64 data of a `data:image/...;base64,` (or `data:;base64,`) URI.
    Inline(&'a str),
    /// An http(s) URL.
    Remote,
    /// Anything else.
    Invalid,
}

/// Whether `s` starts with `prefix`, ignoring ASCII case.
fn has_prefix(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn image_source(url: &str) -> ImageSource<'_> {
    if has_prefix(url, "http://") || has_prefix(url, "https://") {
        return ImageSource::Remote;
    }
    let Some(rest) = url.get(5..).filter(|_| has_prefix(url, "data:")) else { return ImageSource::Invalid };
    let Some((header, data)) = rest.split_once(',') else { return ImageSource::Invalid };
    let mut params = header.split(';');
    let media = params.next().unwrap_or("");
    let base64 = params.next_back().is_some_and(|p| p.eq_ignore_ascii_case("base64"));
    if base64 && (media.is_empty() || has_prefix(media, "image/")) {
        ImageSource::Inline(data)
    } else {
        ImageSource::Invalid
    }
}

/// An OpenAI assistant tool call as a native one: `arguments` parsed from its JSON string,
/// `index` written. Records the call's id and name for later `tool` messages.
fn tool_call(i: usize, j: usize, call: Value, calls: &mut Vec<(String, String)>) -> Result<Value, RequestError> {
    let bad = RequestError::InvalidToolCall { message: i, call: j };
    let Value::Object(mut call) = call else { return Err(bad) };
    let Some(Value::Object(mut function)) = call.remove("function") else { return Err(bad) };
    let name = function.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let arguments = match function.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            _ => return Err(bad),
        },
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad),
    };
    let mut native_function = Map::new();
    native_function.insert("index".into(), j.into());
    native_function.insert("name".into(), Value::String(name.clone()));
    native_function.insert("arguments".into(), Value::Object(arguments));
    let mut native = Map::new();
    if let Some(Value::String(id)) = call.remove("id") {
        calls.push((id.clone(), name));
        native.insert("id".into(), Value::String(id));
    }
    native.insert("function".into(), Value::Object(native_function));
    Ok(Value::Object(native))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sources() {
        assert_eq!(image_source("data:image/png;base64,iVBORw=="), ImageSource::Inline("iVBORw=="));
        assert_eq!(image_source("DATA:image/JPEG;BASE64,/9j/"), ImageSource::Inline("/9j/"));
        assert_eq!(image_source("data:;base64,AAAA"), ImageSource::Inline("AAAA"));
        assert_eq!(image_source("HTTPS://example.com/cat.png"), ImageSource::Remote);
        assert_eq!(image_source("http://x"), ImageSource::Remote);
        assert_eq!(image_source("data:text/plain;base64,AAAA"), ImageSource::Invalid);
        assert_eq!(image_source("data:image/png,rawbytes"), ImageSource::Invalid);
        assert_eq!(image_source("ftp://x"), ImageSource::Invalid);
        assert_eq!(image_source("dataé"), ImageSource::Invalid);
        assert_eq!(image_source(""), ImageSource::Invalid);
    }
}
