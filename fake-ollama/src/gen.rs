//! One generation from admission to the last byte: a [`Plan`] (the pieces the model will emit,
//! one token each), the engine's timing, injected faults, and the encoders that write the pieces
//! as native NDJSON, OpenAI SSE (through core's translators, as Ollama's own middleware does),
//! Anthropic SSE, or one aggregated object.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use crate::machine::StartError;
use bytes::{BufMut, Bytes, BytesMut};
use herd_core::ids::ModelName;
use herd_core::translate::{
    ChatCompletionAggregator, NativeEndpoint, OpenAiChatStream, OpenAiCompletionStream, OpenAiResponseConfig,
    ReasoningField, ResponseError, SseEvent, TextCompletionAggregator,
};
use serde_json::{json, Value};

use super::anthropic::{self, AnthropicStream};
use super::engine::{JobSpec, Run, RunError, Timings};
use super::faults::Before;
use super::reply::{self, error, status_message, write_json_str, Cut, Resp, Style, RUNNER_DIED};
use super::server::{Guard, Shared};
use super::text::{call_id, json_pieces, tool_arguments, unix_secs, word, write_rfc3339};

/// Thinking tokens streamed before the answer when thinking is on.
pub(crate) const THINK_TOKENS: usize = 4;

/// One token's worth of output.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    /// Reasoning text (`thinking`).
    Thinking(&'static str),
    /// Answer text.
    Content(Cow<'static, str>),
    /// A whole native tool call (`{"id","function":{"index","name","arguments":{..}}}`).
    ToolCall(Value),
}

/// What a generation will produce, decided before it runs.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The model string as the client sent it (echoed in every answer).
    pub echo: String,
    /// The model on disk.
    pub model: ModelName,
    /// Its weights, GB.
    pub weights_gb: f64,
    /// The pieces, in order; never empty.
    pub pieces: Vec<Piece>,
    /// Estimated prompt tokens.
    pub prompt_tokens: u32,
    /// `stop` or `length`.
    pub done_reason: &'static str,
}

/// The choices that decide a plan's pieces.
#[derive(Clone, Debug, Default)]
pub(crate) struct PlanInput<'a> {
    /// Seed of the words (from the prompt).
    pub seed: u64,
    /// Stream thinking first.
    pub think: bool,
    /// Answer with a call to this tool definition (`{"type":"function","function":{..}}`).
    pub call: Option<&'a Value>,
    /// `options.num_predict` when positive: exactly this many answer tokens, `done_reason: length`.
    pub num_predict: Option<u32>,
    /// Answer tokens otherwise.
    pub default_tokens: usize,
    /// `format`: `"json"` or a schema object makes the answer one JSON object.
    pub format: Option<&'a Value>,
}

/// The pieces and `done_reason` for `input`.
pub(crate) fn pieces(input: &PlanInput<'_>) -> (Vec<Piece>, &'static str) {
    let mut out = Vec::new();
    if input.think {
        out.extend((0..THINK_TOKENS).map(|i| Piece::Thinking(word(input.seed ^ 0x7468_696e_6b00, i))));
    }
    if let Some(tool) = input.call {
        let function = tool.get("function").unwrap_or(tool);
        let name = function.get("name").and_then(Value::as_str).unwrap_or("tool");
        let arguments = tool_arguments(function.get("parameters").or_else(|| function.get("input_schema")));
        out.push(Piece::ToolCall(json!({
            "id": call_id(input.seed),
            "function": {"index": 0, "name": name, "arguments": arguments},
        })));
        return (out, "stop");
    }
    let n = input.num_predict.map_or(input.default_tokens, |n| n as usize).max(1);
    match input.format {
        Some(Value::String(s)) if s == "json" => {
            out.extend(json_pieces(input.seed, n, None).into_iter().map(|p| Piece::Content(Cow::Owned(p))));
        }
        Some(schema @ Value::Object(_)) => {
            out.extend(json_pieces(input.seed, n, Some(schema)).into_iter().map(|p| Piece::Content(Cow::Owned(p))));
        }
        _ => out.extend((0..n).map(|i| Piece::Content(Cow::Borrowed(word(input.seed, i))))),
    }
    (out, if input.num_predict.is_some() { "length" } else { "stop" })
}

/// How the answer is written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// `/api/chat`.
    NativeChat,
    /// `/api/generate`.
    NativeGenerate,
    /// `/v1/chat/completions`.
    OpenAiChat {
        /// `stream_options.include_usage`.
        include_usage: bool,
    },
    /// `/v1/completions`.
    OpenAiCompletion {
        /// `stream_options.include_usage`.
        include_usage: bool,
    },
    /// `/v1/messages`.
    Anthropic,
}

impl Output {
    /// The error envelope of this surface.
    pub fn style(self) -> Style {
        match self {
            Output::NativeChat | Output::NativeGenerate => Style::Ollama,
            Output::OpenAiChat { .. } | Output::OpenAiCompletion { .. } => Style::OpenAi,
            Output::Anthropic => Style::Anthropic,
        }
    }

    fn endpoint(self) -> NativeEndpoint {
        match self {
            Output::NativeGenerate | Output::OpenAiCompletion { .. } => NativeEndpoint::Generate,
            _ => NativeEndpoint::Chat,
        }
    }
}

/// The answer to an engine refusal.
pub(crate) fn start_error(style: Style, e: StartError, echo: &str) -> Resp {
    match e {
        StartError::ModelNotFound => error(style, 404, &format!("model '{echo}' not found")),
        StartError::OutOfMemory => {
            let mut r = error(style, 500, "model requires more system memory than is available");
            r.headers_mut().insert("x-should-retry", hyper::header::HeaderValue::from_static("false"));
            r
        }
        StartError::NodeDown => error(style, 500, RUNNER_DIED),
    }
}

fn run_error(style: Style, e: RunError, echo: &str) -> Resp {
    match e {
        RunError::Status(code) => error(style, code, &status_message(code, echo)),
        RunError::Reset => error(style, 500, RUNNER_DIED),
    }
}

fn run_error_text(e: RunError) -> String {
    match e {
        RunError::Status(code) => status_message(code, ""),
        RunError::Reset => RUNNER_DIED.to_string(),
    }
}

/// Never answers (a hung Ollama); the connection task is dropped when the client gives up or the
/// fake shuts down.
pub(crate) async fn hang() -> Resp {
    std::future::pending::<Resp>().await
}

/// Runs `plan` and answers in `out`'s format, streaming or not. Injected faults apply first.
pub(crate) async fn execute(shared: &Arc<Shared>, plan: Plan, out: Output, stream: bool, mut guard: Guard) -> Resp {
    let style = out.style();
    match shared.faults.before() {
        Before::Status(code) => return error(style, code, &status_message(code, &plan.echo)),
        Before::Hang => return hang().await,
        Before::Run => {}
    }
    let die_after = if stream { shared.faults.die_after() } else { None };
    let job = JobSpec {
        model: plan.model.clone(),
        weights_gb: plan.weights_gb,
        prompt_tokens: plan.prompt_tokens,
        output_tokens: plan.pieces.len() as u32,
        embed: false,
    };
    let mut run = match shared.engine.start(job).await {
        Ok(run) => run,
        Err(e) => return start_error(style, e, &plan.echo),
    };
    if let Err(e) = run.first_token().await {
        return run_error(style, e, &plan.echo);
    }
    if stream {
        let content_type = if style == Style::Ollama { reply::NDJSON } else { reply::SSE };
        let streamer = Streamer::new(shared, run, plan, out, die_after, guard);
        let body = futures_util::stream::unfold(streamer, |mut s| async move {
            let item = s.step().await?;
            Some((item, s))
        });
        return reply::stream(content_type, Box::pin(body));
    }
    loop {
        match run.next_token().await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return run_error(style, e, &plan.echo),
        }
    }
    let t = match run.finish().await {
        Ok(t) => t,
        Err(e) => return run_error(style, e, &plan.echo),
    };
    guard.complete();
    let native = native_object(&plan, &t, out.endpoint());
    let body = match out {
        Output::NativeChat | Output::NativeGenerate => Ok(native),
        Output::OpenAiChat { .. } => {
            let mut agg = ChatCompletionAggregator::new(openai_config(shared, out, &plan.echo));
            agg.handle_chunk(&native);
            agg.finish().map(|(v, _)| v)
        }
        Output::OpenAiCompletion { .. } => {
            let mut agg = TextCompletionAggregator::new(openai_config(shared, out, &plan.echo));
            agg.handle_chunk(&native);
            agg.finish().map(|(v, _)| v)
        }
        Output::Anthropic => Ok(anthropic::message(&plan, &t)),
    };
    match body {
        Ok(v) => reply::json_value(200, &v),
        Err(e) => error(style, 500, &e.to_string()),
    }
}

/// Runs a load-only job (an embedding, or a chat without messages): `Ok` with its timeline once
/// done. Injected faults apply when `faulty`.
///
/// # Errors
/// The error answer in `style`.
pub(crate) async fn run_embed(
    shared: &Arc<Shared>,
    model: &ModelName,
    weights_gb: f64,
    prompt_tokens: u32,
    style: Style,
    echo: &str,
    faulty: bool,
) -> Result<Timings, Box<Resp>> {
    if faulty {
        match shared.faults.before() {
            Before::Status(code) => return Err(Box::new(error(style, code, &status_message(code, echo)))),
            Before::Hang => return Err(Box::new(hang().await)),
            Before::Run => {}
        }
    }
    let job = JobSpec { model: model.clone(), weights_gb, prompt_tokens, output_tokens: 1, embed: true };
    let mut run = shared.engine.start(job).await.map_err(|e| Box::new(start_error(style, e, echo)))?;
    run.first_token().await.map_err(|e| Box::new(run_error(style, e, echo)))?;
    run.finish().await.map_err(|e| Box::new(run_error(style, e, echo)))
}

/// The OpenAI response config: `chatcmpl-N` / `cmpl-N`, now, the model as asked, thinking under
/// `reasoning` as Ollama writes it.
fn openai_config(shared: &Shared, out: Output, echo: &str) -> OpenAiResponseConfig {
    let n = shared.next_id.fetch_add(1, Ordering::Relaxed) % 999;
    let (prefix, include_usage) = match out {
        Output::OpenAiCompletion { include_usage } => ("cmpl", include_usage),
        Output::OpenAiChat { include_usage } => ("chatcmpl", include_usage),
        _ => ("chatcmpl", false),
    };
    let mut c = OpenAiResponseConfig::new(format!("{prefix}-{n}"), unix_secs(SystemTime::now()), echo);
    c.include_usage = include_usage;
    c.reasoning_field = ReasoningField::Reasoning;
    c
}

/// The native answer as one object (what `"stream": false` returns).
pub(crate) fn native_object(plan: &Plan, t: &Timings, endpoint: NativeEndpoint) -> Value {
    let (mut content, mut thinking, mut calls) = (String::new(), String::new(), Vec::new());
    for p in &plan.pieces {
        match p {
            Piece::Thinking(w) => thinking.push_str(w),
            Piece::Content(c) => content.push_str(c),
            Piece::ToolCall(v) => calls.push(v.clone()),
        }
    }
    let mut o = json!({
        "model": plan.echo,
        "created_at": super::text::rfc3339(SystemTime::now()),
        "done": true,
        "done_reason": plan.done_reason,
        "total_duration": t.total.as_nanos() as u64,
        "load_duration": t.load.as_nanos() as u64,
        "prompt_eval_count": t.prompt_tokens,
        "prompt_eval_duration": t.prompt_eval.as_nanos() as u64,
        "eval_count": t.eval_count,
        "eval_duration": t.eval.as_nanos() as u64,
    });
    let (target, text_key) = match endpoint {
        NativeEndpoint::Chat => {
            o["message"] = json!({"role": "assistant"});
            (&mut o["message"], "content")
        }
        NativeEndpoint::Generate => {
            o["context"] = json!([1, 2, 3]);
            (&mut o, "response")
        }
    };
    target[text_key] = Value::String(content);
    if !thinking.is_empty() {
        target["thinking"] = Value::String(thinking);
    }
    if !calls.is_empty() {
        target["tool_calls"] = Value::Array(calls);
    }
    o
}

/// Writes native NDJSON lines for one response.
pub(crate) struct LineWriter {
    endpoint: NativeEndpoint,
    model_json: Bytes,
    ts: String,
}

impl LineWriter {
    /// A writer for `endpoint`, echoing `model`.
    pub fn new(endpoint: NativeEndpoint, model: &str) -> Self {
        let mut m = BytesMut::new();
        write_json_str(&mut m, model);
        LineWriter { endpoint, model_json: m.freeze(), ts: String::with_capacity(32) }
    }

    fn head(&mut self, out: &mut BytesMut) {
        out.put_slice(b"{\"model\":");
        out.put_slice(&self.model_json);
        out.put_slice(b",\"created_at\":\"");
        self.ts.clear();
        write_rfc3339(&mut self.ts, SystemTime::now());
        out.put_slice(self.ts.as_bytes());
        out.put_slice(b"\",");
    }

    /// One intermediate line (`done: false`).
    pub fn piece(&mut self, p: &Piece, out: &mut BytesMut) {
        self.head(out);
        let text = match p {
            Piece::Content(c) => c.as_ref(),
            _ => "",
        };
        match self.endpoint {
            NativeEndpoint::Chat => {
                out.put_slice(b"\"message\":{\"role\":\"assistant\",\"content\":");
                write_json_str(out, text);
            }
            NativeEndpoint::Generate => {
                out.put_slice(b"\"response\":");
                write_json_str(out, text);
            }
        }
        match p {
            Piece::Thinking(w) => {
                out.put_slice(b",\"thinking\":");
                write_json_str(out, w);
            }
            Piece::ToolCall(v) => {
                out.put_slice(b",\"tool_calls\":[");
                let _ = serde_json::to_writer(out.writer(), v);
                out.put_u8(b']');
            }
            Piece::Content(_) => {}
        }
        if self.endpoint == NativeEndpoint::Chat {
            out.put_u8(b'}');
        }
        out.put_slice(b",\"done\":false}\n");
    }

    /// The final line: `done: true`, `done_reason` and the six metrics (all written, zeros too).
    pub fn done(&mut self, t: &Timings, reason: &str, out: &mut BytesMut) {
        self.head(out);
        match self.endpoint {
            NativeEndpoint::Chat => out.put_slice(b"\"message\":{\"role\":\"assistant\",\"content\":\"\"},"),
            NativeEndpoint::Generate => out.put_slice(b"\"response\":\"\","),
        }
        let _ = write!(out, "\"done\":true,\"done_reason\":\"{reason}\",");
        if self.endpoint == NativeEndpoint::Generate {
            out.put_slice(b"\"context\":[1,2,3],");
        }
        let _ = writeln!(
            out,
            "\"total_duration\":{},\"load_duration\":{},\"prompt_eval_count\":{},\"prompt_eval_duration\":{},\
             \"eval_count\":{},\"eval_duration\":{}}}",
            t.total.as_nanos(),
            t.load.as_nanos(),
            t.prompt_tokens,
            t.prompt_eval.as_nanos(),
            t.eval_count,
            t.eval.as_nanos()
        );
    }

    /// Ollama's mid-stream error line, `{"error":"..."}`.
    pub fn error(message: &str, out: &mut BytesMut) {
        out.put_slice(b"{\"error\":");
        write_json_str(out, message);
        out.put_slice(b"}\n");
    }
}

/// Writes a piece, the end or an error in one surface's stream format.
enum Encoder {
    Native(LineWriter),
    OpenAiChat(LineWriter, BytesMut, Box<OpenAiChatStream>),
    OpenAiCompletion(LineWriter, BytesMut, Box<OpenAiCompletionStream>),
    Anthropic(Box<AnthropicStream>),
}

/// Feeds native lines in `scratch` to an OpenAI translator and writes its events as SSE.
macro_rules! translate {
    ($stream:expr, $scratch:expr, $out:expr) => {{
        let line = $scratch.split();
        $stream.handle_line(&line[..line.len().saturating_sub(1)]);
        while let Some(ev) = $stream.poll_event() {
            write_sse(&ev, $out);
        }
    }};
}

fn write_sse(ev: &SseEvent, out: &mut BytesMut) {
    out.put_slice(b"data: ");
    out.put_slice(ev.data().as_bytes());
    out.put_slice(b"\n\n");
}

impl Encoder {
    fn piece(&mut self, p: &Piece, out: &mut BytesMut) {
        match self {
            Encoder::Native(w) => w.piece(p, out),
            Encoder::OpenAiChat(w, scratch, s) => {
                w.piece(p, scratch);
                translate!(s, scratch, out);
            }
            Encoder::OpenAiCompletion(w, scratch, s) => {
                w.piece(p, scratch);
                translate!(s, scratch, out);
            }
            Encoder::Anthropic(a) => a.piece(p, out),
        }
    }

    fn done(&mut self, t: &Timings, reason: &str, out: &mut BytesMut) {
        match self {
            Encoder::Native(w) => w.done(t, reason, out),
            Encoder::OpenAiChat(w, scratch, s) => {
                w.done(t, reason, scratch);
                translate!(s, scratch, out);
            }
            Encoder::OpenAiCompletion(w, scratch, s) => {
                w.done(t, reason, scratch);
                translate!(s, scratch, out);
            }
            Encoder::Anthropic(a) => a.done(t, reason, out),
        }
    }

    fn error(&mut self, message: &str, out: &mut BytesMut) {
        let upstream = || ResponseError::Upstream { message: message.to_string() };
        match self {
            Encoder::Native(_) => LineWriter::error(message, out),
            Encoder::OpenAiChat(_, _, s) => {
                s.handle_failure(upstream());
                std::iter::from_fn(|| s.poll_event()).for_each(|ev| write_sse(&ev, out));
            }
            Encoder::OpenAiCompletion(_, _, s) => {
                s.handle_failure(upstream());
                std::iter::from_fn(|| s.poll_event()).for_each(|ev| write_sse(&ev, out));
            }
            Encoder::Anthropic(a) => a.error(message, out),
        }
    }
}

/// The state of one streamed answer; the body polls [`Streamer::step`] for each chunk.
struct Streamer {
    run: Run,
    plan: Plan,
    enc: Encoder,
    next: usize,
    die_after: Option<u32>,
    sent: u32,
    buf: BytesMut,
    guard: Guard,
    ended: bool,
}

impl Streamer {
    fn new(shared: &Shared, run: Run, plan: Plan, out: Output, die_after: Option<u32>, guard: Guard) -> Self {
        let line = LineWriter::new(out.endpoint(), &plan.echo);
        let enc = match out {
            Output::NativeChat | Output::NativeGenerate => Encoder::Native(line),
            Output::OpenAiChat { .. } => {
                let s = OpenAiChatStream::new(openai_config(shared, out, &plan.echo));
                Encoder::OpenAiChat(line, BytesMut::with_capacity(512), Box::new(s))
            }
            Output::OpenAiCompletion { .. } => {
                let s = OpenAiCompletionStream::new(openai_config(shared, out, &plan.echo));
                Encoder::OpenAiCompletion(line, BytesMut::with_capacity(512), Box::new(s))
            }
            Output::Anthropic => Encoder::Anthropic(Box::new(AnthropicStream::new(&plan))),
        };
        Streamer {
            run,
            plan,
            enc,
            next: 0,
            die_after,
            sent: 0,
            buf: BytesMut::with_capacity(8192),
            guard,
            ended: false,
        }
    }

    /// The next chunk: a piece once its token is due, the final chunk at the end, or the cut.
    async fn step(&mut self) -> Option<Result<Bytes, Cut>> {
        if self.ended {
            return None;
        }
        if self.die_after.is_some_and(|n| self.sent >= n) {
            self.ended = true;
            // Let hyper flush what was sent before the cut: it writes buffered frames when the
            // body is pending, and drops them unwritten when the body fails.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            return Some(Err(Cut));
        }
        if self.next >= self.plan.pieces.len() {
            self.ended = true;
            match self.run.finish().await {
                Ok(t) => {
                    self.enc.done(&t, self.plan.done_reason, &mut self.buf);
                    self.guard.complete();
                }
                Err(e) => self.enc.error(&run_error_text(e), &mut self.buf),
            }
            return Some(Ok(self.buf.split().freeze()));
        }
        if self.next > 0 {
            if let Err(e) = self.run.next_token().await {
                self.ended = true;
                self.enc.error(&run_error_text(e), &mut self.buf);
                return Some(Ok(self.buf.split().freeze()));
            }
        }
        self.enc.piece(&self.plan.pieces[self.next], &mut self.buf);
        self.next += 1;
        self.sent += 1;
        if self.buf.capacity() < 1024 {
            self.buf.reserve(8192);
        }
        Some(Ok(self.buf.split().freeze()))
    }
}
