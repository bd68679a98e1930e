//! The router's one table of paths: what each path is, the methods it answers and the key it
//! needs. The service admits, refuses with 405 and `Allow`, and dispatches from it alone.
//!
//! ```
//! use herd_core::api::routes::{Access, Route};
//! use herd_core::api::Surface;
//!
//! assert_eq!(Route::of("/api/chat/"), Some(Route::Inference(Surface::OllamaChat)));
//! assert_eq!(Route::of("/fleet/drain/studio"), Some(Route::Drain));
//! assert_eq!(Route::Drain.access(), Access::Admin);
//! assert_eq!(Route::Tags.allow(), "GET, HEAD");
//! assert!(Route::of("/nowhere").is_none());
//! ```

use super::Surface;

/// A path the router serves.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// A routed inference surface (`POST`).
    Inference(Surface),
    /// `/`: "Ollama is running".
    Root,
    /// `/api/version`.
    Version,
    /// `/api/tags`: the fleet's models.
    Tags,
    /// `/api/ps`: the fleet's loaded models.
    Ps,
    /// `/api/image-models`: the fleet's image models (ollama-herd's list).
    ImageModels,
    /// `/v1/models`.
    Models,
    /// `/v1/models/{id}`.
    Model,
    /// `/fleet/status`.
    FleetStatus,
    /// `/fleet/queue`: ollama-herd's light queue view, for clients that poll before sending.
    FleetQueue,
    /// `/fleet/limits`: ollama-herd's serving constraints (retries, hot-model caps, free slots).
    FleetLimits,
    /// `/fleet/explain?model=`.
    FleetExplain,
    /// `/fleet/traces?limit=`.
    FleetTraces,
    /// `/fleet/usage`.
    FleetUsage,
    /// `/heartbeat`: node reports.
    Heartbeat,
    /// `/api/show`.
    Show,
    /// `/api/pull`.
    Pull,
    /// `/api/delete`.
    Delete,
    /// `/api/copy`.
    Copy,
    /// `/api/create`.
    Create,
    /// `/api/push`.
    Push,
    /// `/fleet/drain/{node}`.
    Drain,
    /// `/fleet/undrain/{node}`: takes an operator's drain back.
    Undrain,
    /// `/metrics`: Prometheus' scrape.
    Metrics,
    /// `/v1/messages/count_tokens`: Anthropic's prompt token count, estimated by the router.
    CountTokens,
}

/// The key a route needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// None: liveness, the version, and node heartbeats (which carry the fleet key themselves).
    Open,
    /// An inference key (or the admin key), when keys are configured.
    Api,
    /// The admin key (or, with none configured, an inference key).
    Admin,
}

/// The prefix of [`Route::Model`] paths.
pub const MODEL_PREFIX: &str = "/v1/models/";
/// The prefix of [`Route::Drain`] paths.
pub const DRAIN_PREFIX: &str = "/fleet/drain/";
/// The prefix of [`Route::Undrain`] paths.
pub const UNDRAIN_PREFIX: &str = "/fleet/undrain/";

impl Route {
    /// The route of `path` (a trailing `/` ignored), if the router serves it.
    pub fn of(path: &str) -> Option<Route> {
        let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
        if let Some(s) = Surface::from_path(path) {
            return Some(Route::Inference(s));
        }
        Some(match path {
            "/" => Route::Root,
            "/api/version" => Route::Version,
            "/api/tags" => Route::Tags,
            "/api/ps" => Route::Ps,
            "/api/image-models" => Route::ImageModels,
            "/v1/models" => Route::Models,
            "/fleet/status" => Route::FleetStatus,
            "/fleet/queue" => Route::FleetQueue,
            "/fleet/limits" => Route::FleetLimits,
            "/fleet/explain" => Route::FleetExplain,
            "/fleet/traces" => Route::FleetTraces,
            "/fleet/usage" => Route::FleetUsage,
            "/heartbeat" => Route::Heartbeat,
            "/metrics" => Route::Metrics,
            "/api/show" => Route::Show,
            "/api/pull" => Route::Pull,
            "/api/delete" => Route::Delete,
            "/api/copy" => Route::Copy,
            "/api/create" => Route::Create,
            "/api/push" => Route::Push,
            "/v1/messages/count_tokens" => Route::CountTokens,
            p if p.starts_with(MODEL_PREFIX) => Route::Model,
            p if p.starts_with(DRAIN_PREFIX) => Route::Drain,
            p if p.starts_with(UNDRAIN_PREFIX) => Route::Undrain,
            _ => return None,
        })
    }

    /// The methods it answers, as an `Allow` header value. `GET /v1/messages` is Anthropic
    /// clients' probe of the endpoint (herd-router.md §9.4).
    pub fn allow(self) -> &'static str {
        match self {
            Route::Inference(Surface::AnthropicMessages) => "GET, HEAD, POST",
            Route::Inference(_)
            | Route::CountTokens
            | Route::Heartbeat
            | Route::Show
            | Route::Pull
            | Route::Copy
            | Route::Create
            | Route::Push
            | Route::Drain
            | Route::Undrain => "POST",
            Route::Delete => "DELETE",
            _ => "GET, HEAD",
        }
    }

    /// Whether it answers `method` (`HEAD` wherever `GET` is).
    pub fn accepts(self, method: &str) -> bool {
        self.allow().split(", ").any(|m| m == method)
    }

    /// The key it needs.
    pub fn access(self) -> Access {
        match self {
            Route::Root | Route::Version | Route::Heartbeat => Access::Open,
            Route::Pull | Route::Delete | Route::Copy | Route::Create | Route::Push | Route::Drain | Route::Undrain => {
                Access::Admin
            }
            _ => Access::Api,
        }
    }

    /// The admin calls forwarded to one node: their node endpoint, and whether the router may
    /// pick the node itself when none is named (a pull only).
    pub fn admin_forward(self) -> Option<(&'static str, bool)> {
        match self {
            Route::Pull => Some(("/api/pull", true)),
            Route::Delete => Some(("/api/delete", false)),
            Route::Copy => Some(("/api/copy", false)),
            Route::Create => Some(("/api/create", false)),
            Route::Push => Some(("/api/push", false)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table() {
        assert_eq!(Route::of("/"), Some(Route::Root));
        assert_eq!(Route::of("/api/tags/"), Some(Route::Tags));
        assert_eq!(Route::of("/api/image-models"), Some(Route::ImageModels));
        assert_eq!((Route::ImageModels.allow(), Route::ImageModels.access()), ("GET, HEAD", Access::Api));
        assert_eq!(Route::of("/v1/models/qwen3:8b"), Some(Route::Model));
        assert_eq!(Route::Model.allow(), "GET, HEAD");
        assert!(Route::Tags.accepts("HEAD") && !Route::Tags.accepts("POST"));
        assert_eq!(Route::Delete.allow(), "DELETE");
        assert_eq!(Route::Heartbeat.access(), Access::Open);
        assert_eq!(Route::Inference(Surface::OpenAiChat).access(), Access::Api);
        for s in Surface::ALL {
            assert_eq!(Route::of(s.path()), Some(Route::Inference(s)));
            assert!(Route::Inference(s).accepts("POST"));
        }
        assert!(Route::Inference(Surface::AnthropicMessages).accepts("GET"));
        assert!(!Route::Inference(Surface::OpenAiChat).accepts("GET"));
        assert_eq!(Route::of("/v1/messages/count_tokens/"), Some(Route::CountTokens));
        assert_eq!((Route::CountTokens.allow(), Route::CountTokens.access()), ("POST", Access::Api));
        assert_eq!(Route::Pull.admin_forward(), Some(("/api/pull", true)));
        assert_eq!(Route::Tags.admin_forward(), None);
        assert_eq!((Route::of("/metrics"), Route::Metrics.access()), (Some(Route::Metrics), Access::Api));
        for (path, route) in [("/fleet/queue", Route::FleetQueue), ("/fleet/limits/", Route::FleetLimits)] {
            assert_eq!(Route::of(path), Some(route));
            assert_eq!((route.access(), route.allow()), (Route::FleetStatus.access(), "GET, HEAD"));
        }
    }
}
