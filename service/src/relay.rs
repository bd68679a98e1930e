//! After commit: the body that carries a node's answer to the client. Bytes pass through untouched
//! when the client speaks the node's protocol (watched only for the token counts and the end), or
//! go through core's translators when they differ. Either way the request ends exactly once: the
//! body reports `Finished` or `Failed` when the upstream ends, and `ClientGone` when it is dropped
//! before that. A failure after commit is told in the client's protocol, never as a success.

use crate::driver::{AttemptInput, DriverTx, Input, ReqMsg};
use crate::errors::Proto;
use crate::BodyStream;
use crate::{Instant, Runtime};
use bytes::{Bytes, BytesMut};
use herd_core::ids::{AttemptId, RequestId};
use herd_core::policy::retry::UpstreamFailure;
use herd_core::router::{CancelReason, Usage};
use herd_core::translate::{OpenAiChatStream, OpenAiCompletionStream, SseEvent};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How often a streaming answer reports progress to the router (its stall timer).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The longest final line kept to read the token counts from.
const MAX_TAIL_BYTES: usize = 256 * 1024;
/// Bytes kept before the last line, for the events before the last (Anthropic's usage).
const TAIL_WINDOW: usize = 4096;
/// Most bytes gathered from the node before they are written to the client in one frame.
const COALESCE_BYTES: usize = 16 * 1024;

/// Tells the router how a request ended, exactly once; tells it the client left if dropped first.
pub struct EndGuard {
    driver: DriverTx,
    request: Option<RequestId>,
    attempt: Option<AttemptId>,
    ended: bool,
}

impl EndGuard {
    /// A guard for a request whose id is not known yet.
    pub fn new(driver: DriverTx) -> Self {
        EndGuard { driver, request: None, attempt: None, ended: false }
    }
    /// The router's id for the request.
    pub fn admitted(&mut self, id: RequestId) {
        self.request = Some(id);
    }
    /// The id, once admitted.
    pub fn request(&self) -> Option<RequestId> {
        self.request
    }
    /// The attempt now running.
    pub fn attempt(&mut self, attempt: AttemptId) {
        self.attempt = Some(attempt);
    }
    /// Reports an attempt input.
    pub fn report(&self, input: AttemptInput) {
        if let Some(a) = self.attempt {
            self.driver.send_now(Input::Attempt(a, input));
        }
    }
    /// The final HTTP status, for the trace.
    pub fn status(&self, status: u16) {
        if let Some(id) = self.request {
            self.driver.send_now(Input::Status(id, status));
        }
    }
    /// Reports the end (finished or failed) and disarms the guard.
    pub fn end(&mut self, input: AttemptInput) {
        if !self.ended {
            self.report(input);
            self.ended = true;
        }
    }
    /// The router already ended the request (a rejection): nothing to report.
    pub fn disarm(&mut self) {
        self.ended = true;
    }
    /// The driver handle.
    pub fn driver(&self) -> &DriverTx {
        &self.driver
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.ended {
            if let Some(id) = self.request {
                self.driver.send_now(Input::ClientGone(id));
            }
        }
    }
}

/// How a committed streaming answer is shaped for the client.
pub enum Shaper {
    /// Native NDJSON passed through; the last line gives the counts.
    Ndjson(Tail),
    /// OpenAI SSE passed through (`data: ...`); a usage chunk gives the counts when asked.
    OpenAiSse(Tail),
    /// Anthropic SSE passed through; `message_delta` / `message_start` give the counts.
    AnthropicSse(Tail),
    /// Native chat NDJSON translated to OpenAI chat SSE.
    Chat(Box<OpenAiChatStream>),
    /// Native generate NDJSON translated to OpenAI completion SSE.
    Completion(Box<OpenAiCompletionStream>),
}

/// The bytes since the last complete line but one: enough to read the final line at the end.
#[derive(Default)]
pub struct Tail {
    buf: Vec<u8>,
    events: u64,
}

impl Tail {
    fn feed(&mut self, data: &[u8]) {
        self.events += data.iter().filter(|&&b| b == b'\n').count() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() <= TAIL_WINDOW {
            return;
        }
        // Keep the last few KiB, and the whole last complete line however long (a generate
        // answer's final line carries its `context` array).
        let body = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let last_line = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let cut = last_line.min(self.buf.len() - TAIL_WINDOW);
        self.buf.drain(..cut);
        if self.buf.len() > MAX_TAIL_BYTES {
            let cut = self.buf.len() - MAX_TAIL_BYTES;
            self.buf.drain(..cut);
        }
    }
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.buf.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace))
    }
}

/// What the end of a passed-through stream says.
enum Ending {
    Done(Usage),
    Error,
    Truncated,
}

fn count(v: &serde_json::Value, key: &str) -> u32 {
    v.get(key).and_then(serde_json::Value::as_u64).map_or(0, |n| n.min(u32::MAX as u64) as u32)
}

fn ndjson_ending(tail: &Tail) -> Ending {
    let Some(line) = tail.lines().last() else { return Ending::Truncated };
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(v) if v.get("done").and_then(serde_json::Value::as_bool) == Some(true) => Ending::Done(Usage {
            prompt_tokens: count(&v, "prompt_eval_count"),
            completion_tokens: count(&v, "eval_count"),
        }),
        Ok(v) => match v.get("error") {
            Some(_) => Ending::Error,
            None => Ending::Truncated,
        },
        Err(_) => Ending::Truncated,
    }
}

fn openai_ending(tail: &Tail) -> Ending {
    let mut usage = None;
    let mut done = false;
    for line in tail.lines() {
        let Some(data) = line.strip_prefix(b"data:") else { continue };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            done = true;
            continue;
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
            if v.get("error").is_some() {
                return Ending::Error;
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                usage = Some(Usage {
                    prompt_tokens: count(u, "prompt_tokens"),
                    completion_tokens: count(u, "completion_tokens"),
                });
            }
        }
    }
    if !done {
        return Ending::Truncated;
    }
    // Without the usage chunk, count the content events (role and finish chunks excluded).
    Ending::Done(usage.unwrap_or(Usage {
        prompt_tokens: 0,
        completion_tokens: (tail.events / 2).saturating_sub(3).min(u32::MAX as u64) as u32,
    }))
}

fn anthropic_ending(tail: &Tail) -> Ending {
    let mut stop = false;
    let mut usage = Usage::default();
    for line in tail.lines() {
        if line.starts_with(b"event: message_stop") {
            stop = true;
        }
        if line.starts_with(b"event: error") {
            return Ending::Error;
        }
        if let Some(data) = line.strip_prefix(b"data:") {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) {
                if let Some(u) = v.get("usage") {
                    usage.completion_tokens = usage.completion_tokens.max(count(u, "output_tokens"));
                    usage.prompt_tokens = usage.prompt_tokens.max(count(u, "input_tokens"));
                }
            }
        }
    }
    if stop {
        Ending::Done(usage)
    } else {
        Ending::Truncated
    }
}

impl Shaper {
    fn proto(&self) -> Proto {
        match self {
            Shaper::Ndjson(_) => Proto::Ollama,
            Shaper::OpenAiSse(_) | Shaper::Chat(_) | Shaper::Completion(_) => Proto::OpenAi,
            Shaper::AnthropicSse(_) => Proto::Anthropic,
        }
    }

    /// Feeds upstream bytes; returns what to send on.
    pub fn feed(&mut self, data: Bytes, out: &mut VecDeque<Bytes>) {
        match self {
            Shaper::Ndjson(t) | Shaper::OpenAiSse(t) | Shaper::AnthropicSse(t) => {
                t.feed(&data);
                out.push_back(data);
            }
            Shaper::Chat(s) => {
                s.handle_bytes(&data);
                drain_events(|| s.poll_event(), out);
            }
            Shaper::Completion(s) => {
                s.handle_bytes(&data);
                drain_events(|| s.poll_event(), out);
            }
        }
    }

    /// The upstream ended cleanly: the outcome, and any last bytes to send.
    pub fn end(&mut self, out: &mut VecDeque<Bytes>) -> AttemptInput {
        let ending = match self {
            Shaper::Ndjson(t) => ndjson_ending(t),
            Shaper::OpenAiSse(t) => openai_ending(t),
            Shaper::AnthropicSse(t) => anthropic_ending(t),
            Shaper::Chat(s) => {
                s.handle_end();
                drain_events(|| s.poll_event(), out);
                return translated_ending(s.usage(), s.error().is_some());
            }
            Shaper::Completion(s) => {
                s.handle_end();
                drain_events(|| s.poll_event(), out);
                return translated_ending(s.usage(), s.error().is_some());
            }
        };
        match ending {
            Ending::Done(usage) => AttemptInput::Finished(usage),
            // The node reported its own error in-stream; the client already has it.
            Ending::Error => AttemptInput::Failed(UpstreamFailure::Status { code: 500, saturated: false }),
            Ending::Truncated => {
                out.push_back(crate::errors::stream_error(
                    self.proto(),
                    "the node closed the stream before it finished",
                ));
                AttemptInput::Failed(UpstreamFailure::Reset)
            }
        }
    }

    /// The upstream failed mid-stream.
    pub fn fail(&mut self, out: &mut VecDeque<Bytes>, message: &str) -> AttemptInput {
        match self {
            Shaper::Chat(s) => {
                s.handle_failure(herd_core::translate::ResponseError::Truncated);
                drain_events(|| s.poll_event(), out);
            }
            Shaper::Completion(s) => {
                s.handle_failure(herd_core::translate::ResponseError::Truncated);
                drain_events(|| s.poll_event(), out);
            }
            _ => out.push_back(crate::errors::stream_error(self.proto(), message)),
        }
        AttemptInput::Failed(UpstreamFailure::Reset)
    }
}

fn translated_ending(usage: Option<Usage>, failed: bool) -> AttemptInput {
    match usage {
        Some(u) if !failed => AttemptInput::Finished(u),
        _ => AttemptInput::Failed(UpstreamFailure::Reset),
    }
}

fn drain_events(mut next: impl FnMut() -> Option<SseEvent>, out: &mut VecDeque<Bytes>) {
    let mut buf = Vec::new();
    while let Some(ev) = next() {
        ev.encode(&mut buf);
    }
    if !buf.is_empty() {
        out.push_back(Bytes::from(buf));
    }
}

/// Core's orders that still matter after commit: the reaper ending a stalled attempt, the
/// request ended because its client left.
pub struct Orders {
    rx: tokio::sync::mpsc::UnboundedReceiver<ReqMsg>,
    attempt: AttemptId,
    open: bool,
}

impl Orders {
    /// Watches `rx` for the end of `attempt`.
    pub fn new(rx: tokio::sync::mpsc::UnboundedReceiver<ReqMsg>, attempt: AttemptId) -> Self {
        Orders { rx, attempt, open: true }
    }

    /// Why core ended the attempt, once it has. A closed channel (the router shutting down) is
    /// not an order: the answer keeps flowing.
    pub fn poll_cancel(&mut self, cx: &mut Context<'_>) -> Poll<CancelReason> {
        while self.open {
            match self.rx.poll_recv(cx) {
                // A first-byte-timeout cancel that crossed this attempt's first byte is moot: the
                // attempt committed when it was reported (core's `Command::Cancel`).
                Poll::Ready(Some(ReqMsg::Cancel(a, reason)))
                    if a == self.attempt && reason != CancelReason::FirstByteTimeout =>
                {
                    return Poll::Ready(reason)
                }
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => self.open = false,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Pending
    }

    /// Waits for [`Orders::poll_cancel`].
    pub async fn cancelled(&mut self) -> CancelReason {
        std::future::poll_fn(|cx| self.poll_cancel(cx)).await
    }
}

/// What the client is told when core ends a committed attempt.
pub fn cancel_message(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Stalled => "the node stopped sending (stall timeout); the answer is incomplete",
        CancelReason::FirstByteTimeout => "the node did not answer in time",
        CancelReason::ClientGone => "the request was cancelled",
    }
}

/// The client's body for a committed streaming answer.
pub struct Relay {
    upstream: Box<dyn BodyStream>,
    shaper: Shaper,
    out: VecDeque<Bytes>,
    guard: EndGuard,
    orders: Orders,
    rt: Arc<dyn Runtime>,
    last_progress: Instant,
    done: bool,
}

impl Relay {
    /// A relay that first sends `first` (the frame that committed the attempt).
    pub fn new(
        upstream: Box<dyn BodyStream>,
        first: Bytes,
        shaper: Shaper,
        guard: EndGuard,
        orders: Orders,
        rt: Arc<dyn Runtime>,
    ) -> Self {
        let last_progress = rt.now();
        let mut relay = Relay { upstream, shaper, out: VecDeque::new(), guard, orders, rt, last_progress, done: false };
        relay.shaper.feed(first, &mut relay.out);
        relay
    }
}

impl BodyStream for Relay {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = self;
        if !this.done {
            if let Poll::Ready(reason) = this.orders.poll_cancel(cx) {
                // Core reaped the attempt (the node stalled) and has already ended the request:
                // tell the client in its protocol and stop reading the node.
                let _ = this.shaper.fail(&mut this.out, cancel_message(reason));
                this.guard.disarm();
                this.done = true;
            }
        }
        // Take everything the node has ready (up to one write's worth) before writing: a fast
        // stream then costs one client write per batch, not one per chunk.
        let mut fed = false;
        while !this.done && this.out.iter().map(Bytes::len).sum::<usize>() < COALESCE_BYTES {
            match this.upstream.poll_chunk(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(data))) => {
                    this.shaper.feed(data, &mut this.out);
                    fed = true;
                }
                Poll::Ready(None) => {
                    let end = this.shaper.end(&mut this.out);
                    this.guard.end(end);
                    this.done = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    let end = this.shaper.fail(&mut this.out, &format!("the node's connection failed mid-answer: {e}"));
                    this.guard.end(end);
                    this.done = true;
                }
            }
        }
        if fed && !this.done {
            let now = this.rt.now();
            if now.saturating_since(this.last_progress) >= PROGRESS_EVERY {
                this.last_progress = now;
                this.guard.report(AttemptInput::Progress);
            }
        }
        match this.out.len() {
            0 if this.done => Poll::Ready(None),
            0 => Poll::Pending,
            1 => Poll::Ready(this.out.pop_front().map(Ok)),
            _ => {
                let mut all = BytesMut::with_capacity(this.out.iter().map(Bytes::len).sum());
                for b in this.out.drain(..) {
                    all.extend_from_slice(&b);
                }
                Poll::Ready(Some(Ok(all.freeze())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_line_across_splits() {
        let body = b"{\"a\":1}\n{\"b\":2}\n{\"done\":true,\"prompt_eval_count\":7,\"eval_count\":3}\n";
        for cut in 1..body.len() {
            let mut t = Tail::default();
            t.feed(&body[..cut]);
            t.feed(&body[cut..]);
            match ndjson_ending(&t) {
                Ending::Done(u) => assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3)),
                _ => panic!("cut {cut}"),
            }
        }
    }

    #[test]
    fn ndjson_error_line_and_truncation() {
        let mut t = Tail::default();
        t.feed(b"{\"a\":1}\n{\"error\":\"boom\"}\n");
        assert!(matches!(ndjson_ending(&t), Ending::Error));
        let mut t = Tail::default();
        t.feed(b"{\"a\":1}\n{\"b\":");
        assert!(matches!(ndjson_ending(&t), Ending::Truncated));
    }

    #[test]
    fn openai_usage_chunk_and_done() {
        let mut t = Tail::default();
        t.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
        match openai_ending(&t) {
            Ending::Done(u) => assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 9)),
            _ => panic!(),
        }
        let mut t = Tail::default();
        t.feed(b"data: {\"choices\":[]}\n\n");
        assert!(matches!(openai_ending(&t), Ending::Truncated));
    }

    #[test]
    fn anthropic_stop_event() {
        let mut t = Tail::default();
        t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        match anthropic_ending(&t) {
            Ending::Done(u) => assert_eq!(u.completion_tokens, 5),
            _ => panic!(),
        }
    }
}
