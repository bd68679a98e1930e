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
use herd_core::api::echo::ModelEcho;
use herd_core::api::watch::{StreamEnd, StreamWatch};
use herd_core::ids::{AttemptId, RequestId};
use herd_core::metrics::ChunkGaps;
use herd_core::policy::retry::UpstreamFailure;
use herd_core::router::{CancelReason, Usage};
use herd_core::translate::responses::{ResponsesEvent, ResponsesStream};
use herd_core::translate::{AnthropicEvent, AnthropicStream, OpenAiChatStream, OpenAiCompletionStream, SseEvent};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How often a streaming answer reports progress to the router (its stall timer).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Most bytes gathered from the node before they are written to the client in one frame.
const COALESCE_BYTES: usize = 16 * 1024;

/// Tells the router how a request ended, exactly once; tells it the client left if dropped first.
pub struct EndGuard {
    driver: DriverTx,
    request: Option<RequestId>,
    attempt: Option<AttemptId>,
    ended: bool,
    /// The gaps between the answer's chunks, handed to the router's metrics at the end (boxed
    /// at the first gap: the guard travels in results and stays small).
    gaps: Option<Box<ChunkGaps>>,
    last_chunk: Option<Instant>,
}

impl EndGuard {
    /// A guard for a request whose id is not known yet.
    pub fn new(driver: DriverTx) -> Self {
        EndGuard { driver, request: None, attempt: None, ended: false, gaps: None, last_chunk: None }
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
        self.gaps = None;
        self.last_chunk = None;
    }
    /// Reports an attempt input.
    pub fn report(&self, input: AttemptInput) {
        if let Some(a) = self.attempt {
            self.driver.send_now(Input::Attempt(a, input));
        }
    }
    /// Notes that answer bytes arrived from the node at `now` (the first call starts the clock).
    pub fn chunk_at(&mut self, now: Instant) {
        if let Some(last) = self.last_chunk.replace(now) {
            self.gaps.get_or_insert_with(Box::default).observe(now.saturating_since(last));
        }
    }
    /// Reports the end (finished or failed) and disarms the guard.
    pub fn end(&mut self, input: AttemptInput) {
        if !self.ended {
            if let Some(gaps) = self.gaps.take() {
                self.report(AttemptInput::Gaps(gaps));
            }
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
    /// Passed through as the node wrote it (native NDJSON, OpenAI or Anthropic SSE), watched by
    /// core's one reader of stream endings; with an echo, the model the first event names is
    /// the client's (core's `AttemptPlan::echoes`).
    Pass(StreamWatch, Option<ModelEcho>),
    /// Native chat NDJSON translated to OpenAI chat SSE.
    Chat(Box<OpenAiChatStream>),
    /// Native generate NDJSON translated to OpenAI completion SSE.
    Completion(Box<OpenAiCompletionStream>),
    /// Native chat NDJSON translated to Anthropic's named events.
    Anthropic(Box<AnthropicStream>),
    /// Native chat NDJSON translated to Responses API events.
    Responses(Box<ResponsesStream>),
}

impl Shaper {
    fn proto(&self) -> Proto {
        match self {
            Shaper::Pass(w, _) => w.protocol(),
            Shaper::Chat(_) | Shaper::Completion(_) | Shaper::Responses(_) => Proto::OpenAi,
            Shaper::Anthropic(_) => Proto::Anthropic,
        }
    }

    /// Feeds upstream bytes; returns what to send on.
    pub fn feed(&mut self, data: Bytes, out: &mut VecDeque<Bytes>) {
        match self {
            Shaper::Pass(w, echo) => {
                w.feed(&data);
                match echo.as_mut().and_then(|e| e.feed(&data)) {
                    Some(renamed) if renamed.is_empty() => {}
                    Some(renamed) => out.push_back(Bytes::from(renamed)),
                    None => out.push_back(data),
                }
            }
            Shaper::Anthropic(s) => {
                s.handle_bytes(&data);
                drain_events(|| s.poll_event(), AnthropicEvent::encode, out);
            }
            Shaper::Responses(s) => {
                s.handle_bytes(&data);
                drain_events(|| s.poll_event(), ResponsesEvent::encode, out);
            }
            Shaper::Chat(s) => {
                s.handle_bytes(&data);
                drain_events(|| s.poll_event(), SseEvent::encode, out);
            }
            Shaper::Completion(s) => {
                s.handle_bytes(&data);
                drain_events(|| s.poll_event(), SseEvent::encode, out);
            }
        }
    }

    /// The upstream ended cleanly: the outcome, and any last bytes to send.
    pub fn end(&mut self, out: &mut VecDeque<Bytes>) -> AttemptInput {
        let ending = match self {
            Shaper::Pass(w, echo) => {
                if let Some(held) = echo.as_mut().map(ModelEcho::finish).filter(|h| !h.is_empty()) {
                    out.push_back(Bytes::from(held));
                }
                w.end()
            }
            Shaper::Anthropic(s) => {
                s.handle_end();
                drain_events(|| s.poll_event(), AnthropicEvent::encode, out);
                return translated_ending(s.usage(), s.error().is_some());
            }
            Shaper::Responses(s) => {
                s.handle_end();
                drain_events(|| s.poll_event(), ResponsesEvent::encode, out);
                return translated_ending(s.usage(), s.error().is_some());
            }
            Shaper::Chat(s) => {
                s.handle_end();
                drain_events(|| s.poll_event(), SseEvent::encode, out);
                return translated_ending(s.usage(), s.error().is_some());
            }
            Shaper::Completion(s) => {
                s.handle_end();
                drain_events(|| s.poll_event(), SseEvent::encode, out);
                return translated_ending(s.usage(), s.error().is_some());
            }
        };
        match ending {
            StreamEnd::Done(usage) => AttemptInput::Finished(usage),
            // The node reported its own error in-stream; the client already has it.
            StreamEnd::Error => AttemptInput::Failed(UpstreamFailure::Status { code: 500, saturated: false }),
            StreamEnd::Truncated => {
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
                drain_events(|| s.poll_event(), SseEvent::encode, out);
            }
            Shaper::Completion(s) => {
                s.handle_failure(herd_core::translate::ResponseError::Truncated);
                drain_events(|| s.poll_event(), SseEvent::encode, out);
            }
            Shaper::Anthropic(s) => {
                s.handle_failure(herd_core::translate::ResponseError::Upstream { message: message.to_string() });
                drain_events(|| s.poll_event(), AnthropicEvent::encode, out);
            }
            Shaper::Responses(s) => {
                s.handle_failure(herd_core::translate::ResponseError::Upstream { message: message.to_string() });
                drain_events(|| s.poll_event(), ResponsesEvent::encode, out);
            }
            Shaper::Pass(_, echo) => {
                // A first event still held goes out before the error.
                if let Some(held) = echo.as_mut().map(ModelEcho::finish).filter(|h| !h.is_empty()) {
                    out.push_back(Bytes::from(held));
                }
                out.push_back(crate::errors::stream_error(self.proto(), message));
            }
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

/// Encodes every event `next` has into one buffer, queued as one piece (none when empty).
fn drain_events<E>(mut next: impl FnMut() -> Option<E>, encode: fn(&E, &mut Vec<u8>), out: &mut VecDeque<Bytes>) {
    let mut buf = Vec::new();
    while let Some(ev) = next() {
        encode(&ev, &mut buf);
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
        let mut guard = guard;
        guard.chunk_at(last_progress);
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
            this.guard.chunk_at(now);
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
