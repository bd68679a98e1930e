//! What the translators of native chat NDJSON into named SSE events share (Anthropic's
//! [`super::AnthropicStream`], the Responses API's [`super::responses::ResponsesStream`]): the
//! phase a stream is in, and its inputs and queries ([`named_event_stream!`]), so each keeps only
//! what its protocol writes when it opens, fails and translates a chunk.

/// Where a named-event stream is: nothing sent (`Idle`), opening events sent (`Open`), then its
/// last event queued, a success (`Done`) or a failure (`Failed`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Open,
    Done,
    Failed,
}

/// Appends one named event's wire frame, `event: <name>\ndata: <payload>\n\n`, to `out`.
pub(crate) fn encode_frame(name: &str, data: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// The id of a native tool call that came without one: `prefix` and 24 hex digits of the
/// SHA-256 of the answer's id and the call's index, so a streamed and a gathered answer name
/// the same call alike, with no randomness.
pub(crate) fn derived_call_id(prefix: &str, answer_id: &str, index: u32) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(answer_id.as_bytes()).chain_update(index.to_le_bytes()).finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// The inputs and queries of a named-event stream. The type has the fields `lines`
/// ([`crate::codec::ndjson::LineSplitter`]), `events` (a `VecDeque` of `$event`), `phase`,
/// `usage`, `error` and `ignored`, and the methods `begin` (queues the opening events on the
/// first input; `false` once finished), `fail` (queues the failure event) and `translate` (one
/// parsed chunk's events).
macro_rules! named_event_stream {
    ($event:ty) => {
        /// Feeds one parsed native chunk.
        pub fn handle_chunk(&mut self, chunk: &Value) {
            if !self.begin() {
                self.ignored += 1;
                return;
            }
            match parse_chunk(chunk, NativeEndpoint::Chat) {
                Ok(chunk) => self.translate(&chunk),
                Err(err) => self.fail(err),
            }
        }

        fn line_endpoint(&self) -> NativeEndpoint {
            NativeEndpoint::Chat
        }

        fn handle_plain(&mut self, plain: Plain<'_>) {
            if self.begin() {
                self.translate(&plain.into_chunk());
            } else {
                self.ignored += 1;
            }
        }

        fn handle_value(&mut self, value: Value) {
            self.handle_chunk(&value);
        }

        fn handle_raw(&mut self, _line: &[u8]) -> bool {
            false
        }

        ndjson_input!(lines);

        /// The next event to send, in order; `None` until more input arrives.
        #[must_use]
        pub fn poll_event(&mut self) -> Option<$event> {
            self.events.pop_front()
        }

        /// Whether the last event (a success's or the failure's) has been queued.
        pub fn is_finished(&self) -> bool {
            matches!(self.phase, Phase::Done | Phase::Failed)
        }

        /// Token counts from the done chunk, once the stream completed.
        pub fn usage(&self) -> Option<Usage> {
            self.usage
        }

        /// Why the stream failed, if it did.
        pub fn error(&self) -> Option<&ResponseError> {
            self.error.as_ref()
        }

        /// Chunks that arrived after the stream had finished and were dropped.
        pub fn ignored_chunks(&self) -> usize {
            self.ignored
        }

        /// Reports a failure the adapter saw (a reset connection, a read timeout): queues the
        /// failure event unless the stream already finished.
        pub fn handle_failure(&mut self, err: ResponseError) {
            if self.begin() {
                self.fail(err);
            }
        }

        /// The upstream body ended: handles a last unterminated line, then fails the stream with
        /// [`ResponseError::Truncated`] if no done chunk came. Call it once per body.
        pub fn handle_end(&mut self) {
            self.flush_lines();
            self.handle_failure(ResponseError::Truncated);
        }
    };
}
pub(crate) use named_event_stream;
