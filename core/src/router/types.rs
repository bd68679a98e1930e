//! What the router says to its adapter: commands (effects to perform), events (observations),
//! rejections (typed refusals with their HTTP mapping) and the trace every request ends with.

use crate::fleet::version::OllamaVersion;
use crate::fleet::NodeStatus;
use crate::ids::{AttemptId, ModelName, NodeId, RequestId};
use crate::policy::anthropic::{Resolution, ResolvedBy};
use crate::policy::context::ContextAction;
use crate::policy::retry::UpstreamFailure;
use std::time::Duration;

/// An effect the adapter must perform.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start an upstream call for this attempt.
    Dispatch(Dispatch),
    /// The attempt's first byte arrived: answer the client now. No retry after this.
    Commit(Commit),
    /// Abort this attempt's upstream call (reaped, client gone).
    ///
    /// For [`CancelReason::FirstByteTimeout`] the attempt is not over yet: the adapter aborts the
    /// call and reports `handle_failed` (any failure; it counts as a timeout), and only then is
    /// the request retried or refused. If the first byte had already arrived and the adapter is
    /// answering the client (its first byte crossed this command), it ignores the cancel, and
    /// its `handle_first_byte` commits the attempt. An adapter that reports nothing within
    /// [`CANCEL_GRACE`](crate::router::CANCEL_GRACE) has the attempt failed for it. For the
    /// other reasons the attempt already ended: inputs for it are ignored.
    Cancel {
        /// The request.
        request: RequestId,
        /// The attempt to abort.
        attempt: AttemptId,
        /// Why.
        reason: CancelReason,
    },
    /// Answer the client with this refusal; the request has ended.
    Reject {
        /// The request.
        request: RequestId,
        /// Why, with its HTTP mapping.
        rejection: Rejection,
    },
    /// Pull a model onto a node (auto-pull, only for allow-listed names).
    Pull {
        /// The node.
        node: NodeId,
        /// The model.
        model: ModelName,
    },
}

/// Start an attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    /// The request.
    pub request: RequestId,
    /// This attempt.
    pub attempt: AttemptId,
    /// 1 for the first attempt.
    pub attempt_no: u32,
    /// The node.
    pub node: NodeId,
    /// The model to send (differs from the request's on fallback).
    pub model: ModelName,
    /// Set `options.num_ctx` to this.
    pub num_ctx: Option<u32>,
    /// Set `options.num_predict` to this.
    pub num_predict: Option<u32>,
    /// The `keep_alive` to send when the client sent none (`policy.keep_alive`); the attempt's
    /// plan puts it only on bodies for native endpoints, the only ones that read it.
    pub keep_alive: crate::config::KeepAlive,
    /// What context protection did.
    pub context: ContextAction,
    /// The attempt's first-byte deadline (core enforces it; the adapter may use it as a hint).
    pub first_byte_deadline: crate::time::Instant,
    /// How the model was chosen.
    pub route: RouteKind,
    /// How pins weighed in the choice of node (`X-Fleet-Affinity`).
    pub affinity: Affinity,
    /// The request's estimated need (prompt and reserved output, tokens) and the context it
    /// runs with, when the need does not fit (`X-Fleet-Context-Overflow`).
    pub overflow: Option<(u32, u32)>,
    /// The node's score when it was chosen.
    pub score: f64,
    /// The node's Ollama version: which of its endpoints the attempt may use
    /// ([`crate::api::plan::AttemptPlan::of`]).
    pub ollama: OllamaVersion,
    /// Whether `model` is a thinking model on this node (its `thinking` capability or its name).
    pub thinking_model: bool,
    /// Whether the node is asked to stream its answer (`stream: true` on its native API). Not
    /// for a client that does not stream and whose output budget is at most
    /// `retry.unstreamed_max_tokens`: its answer comes in one piece, within a deadline that
    /// allows for the whole budget.
    pub stream_upstream: bool,
    /// How an Anthropic model id became the requested model, when the client named one.
    pub resolution: Option<Resolution>,
}

impl Dispatch {
    /// The [`Commit`] core emits when this attempt's first byte is reported. An adapter may
    /// answer the client from it at the first byte without waiting for the command: once the
    /// attempt was dispatched, a first byte reported for it always commits it, even when it
    /// crosses a first-byte-timeout [`Command::Cancel`] (see there).
    pub fn commit(&self) -> Commit {
        Commit {
            request: self.request,
            attempt: self.attempt,
            node: self.node,
            model: self.model.clone(),
            attempts: self.attempt_no,
            score: self.score,
            route: self.route,
            affinity: self.affinity,
            overflow: self.overflow,
        }
    }
}

/// Start answering the client. Carries what the `X-Herd-*` headers say, true after retries.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// How pins weighed in the choice of node.
    pub affinity: Affinity,
    /// The estimated need and the context, when the need does not fit.
    pub overflow: Option<(u32, u32)>,
    /// The request.
    pub request: RequestId,
    /// The attempt that won.
    pub attempt: AttemptId,
    /// Its node.
    pub node: NodeId,
    /// The model that answers.
    pub model: ModelName,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// The winning node's score.
    pub score: f64,
    /// How the model was chosen.
    pub route: RouteKind,
}

/// How session and prefix pins weighed in the choice of node (ollama-herd's `X-Fleet-Affinity`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Affinity {
    /// The node the request's session was pinned to.
    Matched,
    /// The node that served the same long prefix.
    Prefix,
    /// No pin counted.
    #[default]
    New,
}

impl Affinity {
    /// Its header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::Matched => "matched",
            Affinity::Prefix => "prefix",
            Affinity::New => "new",
        }
    }
}

/// How the served model relates to the requested one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// The requested model.
    Primary,
    /// One of the client's `fallback_models`.
    ClientFallback,
    /// A loaded model of the same category (VRAM-aware fallback).
    Substitute,
    /// A larger loaded model whose resident context holds the client's `num_ctx`, instead of
    /// reloading the requested one with a bigger window (context protection's upgrade).
    ContextUpgrade,
}

impl RouteKind {
    /// Its name in traces, headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Primary => "primary",
            RouteKind::ClientFallback => "client_fallback",
            RouteKind::Substitute => "substitute",
            RouteKind::ContextUpgrade => "context_upgrade",
        }
    }
}

/// Why an attempt is cancelled.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// No first byte before the deadline.
    FirstByteTimeout,
    /// No progress for the stall timeout.
    Stalled,
    /// The client left.
    ClientGone,
}

/// A refusal, before anything was sent to the client.
#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// No node has any of the models (404).
    UnknownModel(ModelName),
    /// Nodes have it but none could serve within the holding period or queue wait (503).
    Unavailable {
        /// The model.
        model: ModelName,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The chosen queues are full (429).
    QueueFull {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The router holds its maximum of live requests (503).
    Overloaded {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// This client has too many requests in flight (429).
    ClientLimit {
        /// The cap.
        limit: u32,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The node answered with saturation or a client error; relay it.
    Upstream {
        /// The node's status.
        status: u16,
        /// Ollama's saturation answer.
        saturated: bool,
        /// When to come back: set for saturation, 429 and 503 (from `queue.retry_after`).
        retry_after: Option<Duration>,
    },
    /// Every attempt failed (502), or no node was left to try.
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: UpstreamFailure,
    },
}

impl Rejection {
    /// The HTTP status the adapter answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Rejection::UnknownModel(_) => 404,
            Rejection::Unavailable { .. } | Rejection::Overloaded { .. } => 503,
            Rejection::QueueFull { .. } | Rejection::ClientLimit { .. } => 429,
            Rejection::Upstream { saturated: true, .. } => 429,
            Rejection::Upstream { status, .. } => *status,
            Rejection::AttemptsExhausted { .. } => 502,
        }
    }

    /// The `Retry-After` value, when the client should come back.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejection::Unavailable { retry_after, .. }
            | Rejection::QueueFull { retry_after }
            | Rejection::Overloaded { retry_after }
            | Rejection::ClientLimit { retry_after, .. } => Some(*retry_after),
            Rejection::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Short machine-readable reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Rejection::UnknownModel(_) => "unknown_model",
            Rejection::Unavailable { .. } => "unavailable",
            Rejection::QueueFull { .. } => "queue_full",
            Rejection::Overloaded { .. } => "overloaded",
            Rejection::ClientLimit { .. } => "client_limit",
            Rejection::Upstream { .. } => "upstream",
            Rejection::AttemptsExhausted { .. } => "attempts_exhausted",
        }
    }
}

/// Token counts the adapter read from the final chunk.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Answered in full.
    Completed(Usage),
    /// Refused before commit.
    Rejected(Rejection),
    /// Failed after the client got the first byte (reported in-stream by the adapter).
    FailedAfterCommit(UpstreamFailure),
    /// The client left.
    ClientGone,
}

impl Outcome {
    /// The HTTP status the client was answered with: 200 for a completed answer and for a
    /// streamed one that failed after commit (its 200 went out with the head; the failure is
    /// told in the stream), the failure's status for a gathered one
    /// ([`UpstreamFailure::status_after_commit`]), the rejection's, or 499 when the client left.
    pub fn http_status(&self, streamed: bool) -> u16 {
        match self {
            Outcome::Completed(_) => 200,
            Outcome::Rejected(r) => r.http_status(),
            Outcome::FailedAfterCommit(_) if streamed => 200,
            Outcome::FailedAfterCommit(f) => f.status_after_commit(),
            Outcome::ClientGone => 499,
        }
    }

    /// Short machine-readable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed(_) => "completed",
            Outcome::Rejected(_) => "rejected",
            Outcome::FailedAfterCommit(_) => "failed_after_commit",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// The record of one request, emitted exactly once when it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The request.
    pub request: RequestId,
    /// The model asked for.
    pub requested_model: ModelName,
    /// The model that served (or was last tried).
    pub served_model: Option<ModelName>,
    /// The last node tried.
    pub node: Option<NodeId>,
    /// Attempts made.
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// Time from admission to the first attempt.
    pub queued: Duration,
    /// Time from admission to first byte.
    pub ttft: Option<Duration>,
    /// Time from admission to the end.
    pub total: Duration,
    /// When the node that answered had to load the model first: its time from dispatch to the
    /// first byte (the cold load, prefill included).
    pub cold_load: Option<Duration>,
    /// Request tags.
    pub tags: Vec<String>,
    /// Client identity.
    pub client: Option<String>,
    /// The model id an Anthropic client named (`requested_model` is the local model it
    /// resolved to, or the id itself when it did not resolve).
    pub anthropic_model: Option<String>,
}

/// An observation for logs, metrics and the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A request ended; exactly one per request.
    Ended(Trace),
    /// A node changed status (`to: None` = forgotten).
    NodeStatus {
        /// The node.
        node: NodeId,
        /// Its name.
        name: String,
        /// Before (None = new).
        from: Option<NodeStatus>,
        /// After (None = forgotten).
        to: Option<NodeStatus>,
    },
    /// An attempt failed before commit and another will be made.
    Retried {
        /// The request.
        request: RequestId,
        /// The failed attempt.
        attempt: AttemptId,
        /// Its node.
        node: NodeId,
        /// Why.
        failure: UpstreamFailure,
    },
    /// The request is served by another model than asked.
    Fallback {
        /// The request.
        request: RequestId,
        /// Asked for.
        from: ModelName,
        /// Served by.
        to: ModelName,
        /// How.
        route: RouteKind,
    },
    /// The reaper ended an attempt.
    Reaped {
        /// The request.
        request: RequestId,
        /// The attempt.
        attempt: AttemptId,
        /// Its node.
        node: NodeId,
        /// Why.
        reason: CancelReason,
    },
    /// A breaker opened (`open`) or closed.
    Breaker {
        /// The node.
        node: NodeId,
        /// Opened (true) or closed (false).
        open: bool,
    },
    /// Context protection changed or flagged a request.
    Context {
        /// The request.
        request: RequestId,
        /// The node.
        node: NodeId,
        /// What it did.
        action: ContextAction,
    },
    /// An Anthropic model id was resolved to a local model.
    Resolved {
        /// The request.
        request: RequestId,
        /// The id as the client named it.
        asked: String,
        /// The local model.
        model: ModelName,
        /// How.
        by: ResolvedBy,
    },
    /// The request waits: no node can serve it right now.
    Holding {
        /// The request.
        request: RequestId,
        /// The model.
        model: ModelName,
    },
}
