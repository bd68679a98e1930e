//! One attempt, planned: which node endpoint it goes to, whether the client's bytes are passed
//! through, patched or translated, and how the answer is shaped for the client. Decided once per
//! attempt from the request's description and core's dispatch, so the service only performs it.
//!
//! The body is built from the client's own bytes and their [`BodyIndex`]: forwarded untouched
//! when nothing needs changing, else with only the touched top-level fields spliced, else (an
//! OpenAI request translated to a native one) decoded, translated and written once.

use super::body::{BodyIndex, BodyLimits};
use super::patch::{BodyPatch, NumCtxPatch};
use super::responses::ResponsesRequest;
use super::{Protocol, Surface};
use crate::request::RequestSpec;
use crate::router::Dispatch;
use crate::translate::{
    chat_request, completion_request, messages_request, NativeEndpoint, RequestError, SamplingDefaults,
};

/// How one attempt is sent and its answer shaped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttemptPlan {
    /// Native chat/generate: streamed from the node; passed through (a streaming client) or
    /// gathered into one answer.
    Native {
        /// Chat or generate.
        endpoint: NativeEndpoint,
        /// Whether the client asked for a stream.
        client_stream: bool,
    },
    /// Forwarded as sent (model patched, herd's fields stripped, and `keep_alive` added for the
    /// native embedding endpoints): embeddings, and OpenAI and Anthropic requests the node's own
    /// endpoint can carry; `stream` is the protocol of a streamed answer.
    Pass {
        /// The node endpoint (the client's own).
        path: &'static str,
        /// The protocol of the stream, when the answer streams.
        stream: Option<Protocol>,
        /// The node names the model it was sent (a local model an Anthropic id resolved to),
        /// where the answer names the client's own: [`super::echo::ModelEcho`] puts it back.
        echo: bool,
    },
    /// OpenAI chat or completions translated to native, and the answer back.
    Translate {
        /// Chat or generate.
        endpoint: NativeEndpoint,
        /// Whether the client asked for a stream.
        client_stream: bool,
    },
    /// OpenAI Responses `/v1/responses` translated to native `/api/chat` (by way of a chat
    /// request), and the answer back as Responses events or one `response` object. Always
    /// translated: herd, not the node, then decides the window, the budget and `keep_alive`,
    /// and a node older than Ollama 0.13.3 serves it too.
    Responses {
        /// Whether the client asked for a stream.
        client_stream: bool,
    },
    /// Anthropic `/v1/messages` translated to native `/api/chat`, and the answer back.
    Messages {
        /// Whether the client asked for a stream.
        client_stream: bool,
        /// Whether the model thinks (the client's `thinking` goes only to one that does).
        model_thinks: bool,
    },
}

/// How an attempt's answer reaches the client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AnswerShape {
    /// Streamed as the node writes it (native NDJSON, OpenAI or Anthropic SSE), its ending and
    /// usage read by [`super::watch::StreamWatch`] in this protocol.
    PassStream(Protocol),
    /// Native NDJSON translated, as it streams, to OpenAI chat (`Chat`) or completion
    /// (`Generate`) SSE.
    TranslateStream(NativeEndpoint),
    /// Native chat NDJSON translated, as it streams, to Anthropic's named events.
    AnthropicStream,
    /// Native chat NDJSON translated, as it streams, to Responses API events.
    ResponsesStream,
    /// Gathered into one answer before it is written.
    Gather(Gathered),
}

/// How a gathered answer is made.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Gathered {
    /// Native NDJSON into one native object.
    Native(NativeEndpoint),
    /// Native NDJSON into one OpenAI chat completion.
    OpenAiChat,
    /// Native NDJSON into one OpenAI text completion.
    OpenAiCompletion,
    /// Native chat NDJSON into one Anthropic message.
    Anthropic,
    /// Native chat NDJSON into one Responses API `response`.
    Responses,
    /// The node's own whole answer, as it is (embeddings, Anthropic).
    AsIs,
}

/// The body of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptBody {
    /// The client's bytes, as they came.
    AsSent,
    /// New bytes.
    Rewritten(Vec<u8>),
}

/// Why an attempt's body could not be built: the status and message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl PlanError {
    fn new(status: u16, message: impl ToString) -> PlanError {
        PlanError { status, message: message.to_string() }
    }
}

impl AttemptPlan {
    /// The plan for `surface`'s request described by `spec`, dispatched as `d`.
    ///
    /// One rule for both compatible surfaces: the request goes to the node's own OpenAI or
    /// Anthropic endpoint when that endpoint can carry everything core decided, else it is
    /// translated to the native API. An OpenAI stream is passed through unless core patches
    /// `num_ctx` or `num_predict`, which only the native API takes. An Anthropic request is
    /// passed through when the node's Ollama serves `/v1/messages` (0.14.0 on; an unknown
    /// version is taken for an older one) and core does not pin `num_ctx` (the thinking budget
    /// travels as `max_tokens`, which Ollama reads as `num_predict`).
    pub fn of(surface: Surface, spec: &RequestSpec, d: &Dispatch) -> AttemptPlan {
        let patched = d.num_ctx.is_some() || d.num_predict.is_some();
        match surface {
            Surface::OllamaChat => AttemptPlan::Native { endpoint: NativeEndpoint::Chat, client_stream: spec.stream },
            Surface::OllamaGenerate => {
                AttemptPlan::Native { endpoint: NativeEndpoint::Generate, client_stream: spec.stream }
            }
            Surface::OllamaEmbed | Surface::OllamaEmbeddings | Surface::OpenAiEmbeddings => {
                AttemptPlan::Pass { path: surface.path(), stream: None, echo: false }
            }
            Surface::AnthropicMessages if d.ollama.serves_anthropic_messages() && d.num_ctx.is_none() => {
                // Only an id resolved to a local model makes the node name another model than
                // the client asked for; a fallback is named as served, on every surface.
                let echo = d.resolution.as_ref().is_some_and(|r| r.model == d.model);
                AttemptPlan::Pass { path: surface.path(), stream: spec.stream.then_some(Protocol::Anthropic), echo }
            }
            Surface::AnthropicMessages => {
                AttemptPlan::Messages { client_stream: spec.stream, model_thinks: d.thinking_model }
            }
            Surface::OpenAiChat | Surface::OpenAiCompletions if spec.stream && !patched && !spec.remote_images => {
                AttemptPlan::Pass { path: surface.path(), stream: Some(Protocol::OpenAi), echo: false }
            }
            Surface::OpenAiChat => {
                AttemptPlan::Translate { endpoint: NativeEndpoint::Chat, client_stream: spec.stream }
            }
            Surface::OpenAiCompletions => {
                AttemptPlan::Translate { endpoint: NativeEndpoint::Generate, client_stream: spec.stream }
            }
            Surface::OpenAiResponses => AttemptPlan::Responses { client_stream: spec.stream },
        }
    }

    /// The node endpoint the attempt is sent to.
    pub fn path(self) -> &'static str {
        match self {
            AttemptPlan::Native { endpoint: NativeEndpoint::Chat, .. }
            | AttemptPlan::Translate { endpoint: NativeEndpoint::Chat, .. }
            | AttemptPlan::Messages { .. }
            | AttemptPlan::Responses { .. } => "/api/chat",
            AttemptPlan::Native { .. } | AttemptPlan::Translate { .. } => "/api/generate",
            AttemptPlan::Pass { path, .. } => path,
        }
    }

    /// How the answer reaches the client.
    pub fn answer_shape(self) -> AnswerShape {
        match self {
            AttemptPlan::Native { client_stream: true, .. } => AnswerShape::PassStream(Protocol::Ollama),
            AttemptPlan::Native { endpoint, .. } => AnswerShape::Gather(Gathered::Native(endpoint)),
            AttemptPlan::Pass { stream: Some(p), .. } => AnswerShape::PassStream(p),
            AttemptPlan::Pass { stream: None, .. } => AnswerShape::Gather(Gathered::AsIs),
            AttemptPlan::Translate { endpoint, client_stream: true } => AnswerShape::TranslateStream(endpoint),
            AttemptPlan::Translate { endpoint: NativeEndpoint::Chat, .. } => AnswerShape::Gather(Gathered::OpenAiChat),
            AttemptPlan::Translate { .. } => AnswerShape::Gather(Gathered::OpenAiCompletion),
            AttemptPlan::Messages { client_stream: true, .. } => AnswerShape::AnthropicStream,
            AttemptPlan::Messages { .. } => AnswerShape::Gather(Gathered::Anthropic),
            AttemptPlan::Responses { client_stream: true } => AnswerShape::ResponsesStream,
            AttemptPlan::Responses { .. } => AnswerShape::Gather(Gathered::Responses),
        }
    }

    /// The id of a translated answer to request `request`: `chatcmpl-N` for OpenAI chat,
    /// `cmpl-N` for completions, `msg_` and 24 digits for Anthropic.
    pub fn answer_id(self, request: u64) -> String {
        match self {
            AttemptPlan::Translate { endpoint: NativeEndpoint::Chat, .. } => format!("chatcmpl-{request}"),
            AttemptPlan::Messages { .. } => format!("msg_{request:024}"),
            AttemptPlan::Responses { .. } => format!("resp_{request}"),
            _ => format!("cmpl-{request}"),
        }
    }

    /// Whether the node endpoint reads `keep_alive`: the native ones (`/api/chat`,
    /// `/api/generate`, `/api/embed`, `/api/embeddings`). Ollama's OpenAI and Anthropic endpoints
    /// have no way to set it (wire-api.md §6.1), so a body passed to them keeps its bytes.
    pub fn reads_keep_alive(self) -> bool {
        self.path().starts_with("/api/")
    }

    /// Whether the answer must be renamed to the client's model ([`AttemptPlan::Pass`]'s `echo`).
    pub fn echoes(self) -> bool {
        matches!(self, AttemptPlan::Pass { echo: true, .. })
    }

    /// Whether the client gets a stream (else one gathered answer).
    pub fn streams(self) -> bool {
        match self {
            AttemptPlan::Native { client_stream, .. }
            | AttemptPlan::Translate { client_stream, .. }
            | AttemptPlan::Messages { client_stream, .. }
            | AttemptPlan::Responses { client_stream } => client_stream,
            AttemptPlan::Pass { stream, .. } => stream.is_some(),
        }
    }

    /// The body of the attempt from the client's `raw` bytes (indexed by `index`), and whether
    /// a translated OpenAI request asked for a usage chunk. `release` is called once a large
    /// translated body's typed copies are gone, so the caller can give their memory back.
    ///
    /// # Errors
    ///
    /// The client's body cannot be decoded or translated (its status is the client's fault,
    /// 400 or 422), or writing the translation failed (500).
    pub fn body(
        self,
        raw: &[u8],
        index: &BodyIndex,
        spec: &RequestSpec,
        d: &Dispatch,
        release: &mut dyn FnMut(),
    ) -> Result<(AttemptBody, bool), PlanError> {
        self.body_with_images(raw, index, spec, d, &[], release)
    }

    /// [`Self::body`] for a request whose remote images the adapter fetched: `images[i]` is the
    /// bytes of the `i`-th remote `image_url`, in the order [`remote_image_urls`] lists them.
    ///
    /// # Errors
    /// As [`Self::body`]; a remote image without its bytes stays Ollama's own 400.
    pub fn body_with_images(
        self,
        raw: &[u8],
        index: &BodyIndex,
        spec: &RequestSpec,
        d: &Dispatch,
        images: &[Vec<u8>],
        release: &mut dyn FnMut(),
    ) -> Result<(AttemptBody, bool), PlanError> {
        let model = (d.model != spec.model).then(|| d.model.clone());
        let keep_alive = if self.reads_keep_alive() { d.keep_alive.value() } else { None };
        let mut patch = BodyPatch { model, keep_alive, strip_herd_fields: true, ..BodyPatch::default() };
        let mut include_usage = false;
        let body = match self {
            AttemptPlan::Native { .. } => {
                patch.num_ctx = d.num_ctx.map(NumCtxPatch::Set);
                patch.num_predict = d.num_predict;
                patch.force_stream = Some(d.stream_upstream);
                index.patched(raw, &patch)
            }
            AttemptPlan::Pass { path, .. } => {
                if path == Surface::AnthropicMessages.path() {
                    // Ollama reads `max_tokens` as `num_predict`: the thinking budget goes there.
                    patch.max_tokens = d.num_predict;
                }
                let clients_keep_alive = || index.value(raw, "keep_alive").is_some_and(|v| !v.is_null());
                if patch.model.is_none()
                    && patch.max_tokens.is_none()
                    && !index.has_herd_fields(raw)
                    && (patch.keep_alive.is_none() || clients_keep_alive())
                {
                    // Nothing to change: forward the client's own bytes.
                    return Ok((AttemptBody::AsSent, false));
                }
                index.patched(raw, &patch)
            }
            AttemptPlan::Translate { .. } | AttemptPlan::Messages { .. } | AttemptPlan::Responses { .. } => {
                patch.num_ctx = d.num_ctx.map(NumCtxPatch::Set);
                patch.num_predict = d.num_predict;
                patch.force_stream = Some(d.stream_upstream);
                // A translation that does not carry the client's own `keep_alive` (Anthropic's
                // has no such field) must not lose it to herd's default: the client's wins.
                if let Some(own) = index.value(raw, "keep_alive").filter(|v| !v.is_null()) {
                    patch.keep_alive = Some(own);
                }
                // The client's request, decoded from its bytes, becomes the native one, written
                // once (each typed copy is dropped as soon as the next exists) and patched like a
                // native body.
                let (native, usage) = self.translate(raw, index, images)?;
                include_usage = usage;
                let native = native.map_err(|_| PlanError::new(500, "translation failed"))?;
                release();
                let index = BodyIndex::new(&native, &BodyLimits::UNLIMITED).map_err(|e| PlanError::new(500, e))?;
                index.patched(&native, &patch)
            }
        };
        Ok((AttemptBody::Rewritten(body), include_usage))
    }

    /// The native body of a translated request, and whether an OpenAI client asked for usage.
    fn translate(
        self,
        raw: &[u8],
        index: &BodyIndex,
        images: &[Vec<u8>],
    ) -> Result<(serde_json::Result<Vec<u8>>, bool), PlanError> {
        let bad = |e: RequestError| PlanError::new(e.http_status(), e);
        Ok(match self {
            AttemptPlan::Translate { endpoint: NativeEndpoint::Chat, .. } => {
                let parsed = index.decode(raw).map_err(|e| PlanError::new(400, e))?;
                let mut t = chat_request(parsed, SamplingDefaults::OllamaV1).map_err(bad)?;
                for (i, bytes) in images.iter().enumerate().take(t.remote_images().len()) {
                    t.resolve_image(i, bytes).map_err(bad)?;
                }
                let usage = t.include_usage();
                (write_sized(&t.into_body().map_err(bad)?, raw.len()), usage)
            }
            AttemptPlan::Translate { .. } => {
                let parsed = index.decode(raw).map_err(|e| PlanError::new(400, e))?;
                let t = completion_request(parsed, SamplingDefaults::OllamaV1).map_err(bad)?;
                (write_sized(&t.body, raw.len()), t.include_usage)
            }
            AttemptPlan::Responses { .. } => {
                let parsed: ResponsesRequest = index.decode(raw).map_err(|e| PlanError::new(400, e))?;
                let chat = parsed.into_chat().map_err(|e| PlanError::new(e.http_status(), e))?;
                let mut t = chat_request(chat, SamplingDefaults::OllamaV1).map_err(bad)?;
                for (i, bytes) in images.iter().enumerate().take(t.remote_images().len()) {
                    t.resolve_image(i, bytes).map_err(bad)?;
                }
                (write_sized(&t.into_body().map_err(bad)?, raw.len()), false)
            }
            AttemptPlan::Messages { model_thinks, .. } => {
                let parsed = index.decode(raw).map_err(|e| PlanError::new(400, e))?;
                (write_sized(&messages_request(parsed, model_thinks).map_err(bad)?, raw.len()), false)
            }
            AttemptPlan::Native { .. } | AttemptPlan::Pass { .. } => {
                return Err(PlanError::new(500, "not a translated plan"));
            }
        })
    }
}

/// The http(s) URLs of an OpenAI chat request's `image_url` parts (a Responses request's
/// `input_image` ones), in order (empty for a body
/// that names none, checked on its bytes first so most requests are not decoded again).
///
/// # Errors
/// The body is not an OpenAI chat request, or names more than [`MAX_IMAGES`] remote images.
///
/// [`MAX_IMAGES`]: crate::api::image_url::MAX_IMAGES
pub fn remote_image_urls(surface: Surface, raw: &[u8], index: &BodyIndex) -> Result<Vec<String>, PlanError> {
    let mentions = |needle: &[u8]| raw.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if !mentions(b"\"image_url\"") || !mentions(b"http") {
        return Ok(Vec::new());
    }
    let parsed = match surface {
        Surface::OpenAiChat => index.decode(raw).map_err(|e| PlanError::new(400, e))?,
        Surface::OpenAiResponses => {
            let parsed: ResponsesRequest = index.decode(raw).map_err(|e| PlanError::new(400, e))?;
            parsed.into_chat().map_err(|e| PlanError::new(e.http_status(), e))?
        }
        _ => return Ok(Vec::new()),
    };
    let t = chat_request(parsed, SamplingDefaults::OllamaV1).map_err(|e| PlanError::new(e.http_status(), e))?;
    let urls: Vec<String> = t.remote_images().iter().map(|r| r.url.clone()).collect();
    if urls.len() > crate::api::image_url::MAX_IMAGES {
        let max = crate::api::image_url::MAX_IMAGES;
        return Err(PlanError::new(400, format!("at most {max} image URLs per request ({} given)", urls.len())));
    }
    Ok(urls)
}

/// `value` as JSON in a buffer sized for `about` bytes up front: a large body is not copied
/// through a doubling buffer (which held up to three times its size at once).
fn write_sized<T: serde::Serialize>(value: &T, about: usize) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(about + 1024);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{describe_indexed, DescribeContext};
    use crate::config::KeepAlive;
    use crate::ids::{AttemptId, ModelName, NodeId, RequestId};
    use crate::policy::context::ContextAction;
    use crate::router::RouteKind;
    use proptest::prelude::*;
    use serde_json::Value;

    fn dispatch(model: &str, num_ctx: Option<u32>, num_predict: Option<u32>, keep_alive: KeepAlive) -> Dispatch {
        Dispatch {
            request: RequestId(1),
            attempt: AttemptId(1),
            attempt_no: 1,
            node: NodeId(0),
            model: ModelName::new(model),
            num_ctx,
            num_predict,
            keep_alive,
            context: ContextAction::Untouched,
            first_byte_deadline: crate::time::Instant::ZERO,
            route: RouteKind::Primary,
            affinity: crate::router::Affinity::New,
            overflow: None,
            score: 0.0,
            ollama: crate::fleet::version::ANTHROPIC_MESSAGES_SINCE,
            thinking_model: false,
            resolution: None,
            stream_upstream: true,
        }
    }

    fn body_for(surface: Surface, stream: bool, herd_field: bool, keep_alive: bool) -> Vec<u8> {
        let mut v = match surface {
            Surface::OllamaGenerate | Surface::OpenAiCompletions => {
                serde_json::json!({ "model": "m", "prompt": "hi", "stream": stream })
            }
            Surface::OllamaEmbed | Surface::OllamaEmbeddings | Surface::OpenAiEmbeddings => {
                serde_json::json!({ "model": "m", "input": "hi", "prompt": "hi" })
            }
            Surface::AnthropicMessages => serde_json::json!({
                "model": "m", "max_tokens": 9, "stream": stream, "messages": [{ "role": "user", "content": "hi" }]
            }),
            Surface::OpenAiResponses => serde_json::json!({ "model": "m", "stream": stream, "input": "hi" }),
            _ => {
                serde_json::json!({ "model": "m", "stream": stream, "messages": [{ "role": "user", "content": "hi" }] })
            }
        };
        if herd_field {
            v["fallback_models"] = serde_json::json!(["other"]);
        }
        if keep_alive {
            v["keep_alive"] = serde_json::json!("7m");
        }
        serde_json::to_vec(&v).unwrap()
    }

    proptest! {
        #[test]
        fn a_plan_sends_a_body_the_node_endpoint_takes(
            surface_i in 0usize..Surface::ALL.len(),
            stream in any::<bool>(),
            fallback in any::<bool>(),
            herd_field in any::<bool>(),
            num_ctx in proptest::option::of(512u32..65_536),
            num_predict in proptest::option::of(1u32..4096),
            clients_keep_alive in any::<bool>(),
            keep_alive_on in any::<bool>(),
            old_node in any::<bool>(),
        ) {
            let surface = Surface::ALL[surface_i];
            let raw = body_for(surface, stream, herd_field, clients_keep_alive);
            let index = BodyIndex::new(&raw, &BodyLimits::default()).unwrap();
            let spec = describe_indexed(surface, &raw, &index, &DescribeContext::default()).unwrap();
            let served = if fallback { "other" } else { "m" };
            let keep_alive = if keep_alive_on { KeepAlive::default() } else { KeepAlive::Off };
            let mut d = dispatch(served, num_ctx, num_predict, keep_alive);
            if old_node {
                d.ollama = crate::fleet::version::OllamaVersion::parse("0.13.5");
            }
            let plan = AttemptPlan::of(surface, &spec, &d);
            // keep_alive is added only where the node reads it and the client sent none.
            let adds_keep_alive = plan.reads_keep_alive() && keep_alive_on && !clients_keep_alive;
            // The thinking budget goes into a passed-through Anthropic body as `max_tokens`.
            let budget_patched = surface == Surface::AnthropicMessages && num_predict.is_some();
            let unchanged = !fallback && !herd_field && !adds_keep_alive && !budget_patched;
            // The client gets what it asked for.
            prop_assert_eq!(plan.streams(), spec.stream);
            prop_assert_eq!(!matches!(plan.answer_shape(), AnswerShape::Gather(_)), spec.stream);
            let (body, _) = plan.body(&raw, &index, &spec, &d, &mut || {}).unwrap();
            let sent: Value = match &body {
                AttemptBody::AsSent => {
                    // Only when nothing had to change.
                    prop_assert!(unchanged);
                    prop_assert!(matches!(plan, AttemptPlan::Pass { .. }), "forwarded as sent only when passed through");
                    serde_json::from_slice(&raw).unwrap()
                }
                AttemptBody::Rewritten(b) => {
                    // And always then, when passed through.
                    prop_assert!(!(unchanged && matches!(plan, AttemptPlan::Pass { .. })), "rewrote a body that needed no change");
                    serde_json::from_slice(b).unwrap()
                }
            };
            // The client's keep_alive always wins; herd's goes only to native endpoints.
            let want_keep_alive = if clients_keep_alive {
                Some(serde_json::json!("7m"))
            } else {
                adds_keep_alive.then(|| serde_json::json!(-1))
            };
            prop_assert_eq!(sent.get("keep_alive").cloned(), want_keep_alive);
            prop_assert_eq!(sent["model"].as_str(), Some(d.model.as_str()).filter(|_| fallback).or(Some("m")));
            prop_assert!(sent.get("fallback_models").is_none(), "herd's fields never reach a node");
            match plan {
                AttemptPlan::Native { .. }
                | AttemptPlan::Translate { .. }
                | AttemptPlan::Messages { .. }
                | AttemptPlan::Responses { .. } => {
                    // The router always reads a native answer as a stream.
                    prop_assert_eq!(sent["stream"].as_bool(), Some(true));
                    prop_assert!(plan.path() == "/api/chat" || plan.path() == "/api/generate");
                    if let Some(n) = num_ctx {
                        prop_assert_eq!(sent["options"]["num_ctx"].as_u64(), Some(u64::from(n)));
                    }
                    if let Some(n) = num_predict {
                        prop_assert_eq!(sent["options"]["num_predict"].as_u64(), Some(u64::from(n)));
                    }
                }
                AttemptPlan::Pass { path, stream: s, echo } => {
                    prop_assert_eq!(path, surface.path());
                    prop_assert!(!echo, "no id was resolved");
                    // An OpenAI stream is passed through only when core patches nothing.
                    if s == Some(Protocol::OpenAi) {
                        prop_assert!(num_ctx.is_none() && num_predict.is_none());
                    }
                    // An Anthropic request only to a node that serves /v1/messages, without a
                    // pinned window; the thinking budget as `max_tokens`.
                    if surface == Surface::AnthropicMessages {
                        prop_assert!(!old_node && num_ctx.is_none());
                        prop_assert_eq!(sent["max_tokens"].as_u64(), Some(u64::from(num_predict.unwrap_or(9))));
                    }
                }
            }
            if surface == Surface::AnthropicMessages && (old_node || num_ctx.is_some()) {
                prop_assert!(matches!(plan, AttemptPlan::Messages { .. }), "translated: {:?}", plan);
                prop_assert!(sent["messages"][0]["content"] == "hi" && sent.get("max_tokens").is_none());
                prop_assert_eq!(sent["options"]["num_predict"].as_u64(), Some(u64::from(num_predict.unwrap_or(9))));
            }
        }
    }
}
