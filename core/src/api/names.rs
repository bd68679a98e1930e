//! The wire's names, in one place: herd's headers, the content types it writes, the default
//! ports, the mDNS service and the heartbeat path. The router, the node agent and the tests all
//! read them from here.

/// Ollama's port.
pub const OLLAMA_PORT: u16 = 11434;
/// The router's port.
pub const ROUTER_PORT: u16 = 11435;

/// The mDNS service type routers advertise (ollama-herd's).
pub const MDNS_SERVICE_TYPE: &str = "_fleet-manager._tcp.local.";
/// The path node agents post heartbeats and drains to.
pub const HEARTBEAT_PATH: &str = "/heartbeat";

/// The fleet key a router presents to a node's proxy, and a node presents to routers.
pub const FLEET_KEY_HEADER: &str = "x-herd-fleet-key";
/// Tags for usage tracking (`a,b,c`).
pub const TAGS_HEADER: &str = "x-herd-tags";
/// `true` to forbid falling back to another model (ollama-herd's name).
pub const NO_FALLBACK_HEADER: &str = "x-fleet-no-fallback";
/// The node that answered.
pub const NODE_HEADER: &str = "x-herd-node";
/// The model that answered (differs from the one asked on a fallback).
pub const MODEL_HEADER: &str = "x-herd-model";
/// Attempts made.
pub const ATTEMPTS_HEADER: &str = "x-herd-attempts";
/// The answering node's score.
pub const SCORE_HEADER: &str = "x-herd-score";
/// How the model was chosen (`primary`, `client_fallback`, `substitute`).
pub const ROUTE_HEADER: &str = "x-herd-route";
/// The router's id for the request (its trace).
pub const REQUEST_ID_HEADER: &str = "x-herd-request-id";
/// The model id the client named, when herd resolved it to a local model (Anthropic's
/// `claude-…` ids); `X-Fleet-Requested-Model` is then the local model (herd-router.md §9.1).
pub const REQUESTED_MODEL_HEADER: &str = "x-herd-requested-model";
/// How that id was resolved: `map`, `fleet`, `auto_loaded`, `auto_on_disk` or `default`.
pub const RESOLVED_BY_HEADER: &str = "x-herd-resolved-by";

/// ollama-herd's names for the same facts (herd-router.md §9.1), sent beside herd's so its
/// operators' scripts keep working: the node.
pub const FLEET_NODE_HEADER: &str = "x-fleet-node";
/// ollama-herd: the model that answered.
pub const FLEET_SERVED_MODEL_HEADER: &str = "x-fleet-served-model";
/// ollama-herd: the model the client asked for.
pub const FLEET_REQUESTED_MODEL_HEADER: &str = "x-fleet-requested-model";
/// ollama-herd: `true` when the served model differs from the requested one.
pub const FLEET_FALLBACK_HEADER: &str = "x-fleet-fallback";
/// ollama-herd: the backend kind (`ollama` for text).
pub const FLEET_BACKEND_HEADER: &str = "x-fleet-backend";
/// ollama-herd: retries before this answer (attempts − 1).
pub const FLEET_RETRIES_HEADER: &str = "x-fleet-retries";
/// ollama-herd: the node's score, as an integer.
pub const FLEET_SCORE_HEADER: &str = "x-fleet-score";
/// ollama-herd's: how session and prefix pins weighed (`matched`, `prefix`, `new`).
pub const FLEET_AFFINITY_HEADER: &str = "x-fleet-affinity";
/// ollama-herd's: `estimated_tokens=N; context_length=M` when the request does not fit.
pub const FLEET_CONTEXT_OVERFLOW_HEADER: &str = "x-fleet-context-overflow";

/// JSON answers.
pub const JSON: &str = "application/json; charset=utf-8";
/// Native streams.
pub const NDJSON: &str = "application/x-ndjson";
/// OpenAI and Anthropic streams.
pub const SSE: &str = "text/event-stream";
/// Plain-text answers (`Ollama is running`, gin's 404 and 405).
pub const TEXT: &str = "text/plain; charset=utf-8";
