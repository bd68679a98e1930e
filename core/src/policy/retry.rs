//! Which upstream failures may be retried on another node (reference §5), and which count
//! against the node's breaker.

/// How an attempt failed, as the adapter saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// TCP connect refused or timed out.
    Connect,
    /// The connection was reset or closed mid-answer.
    Reset,
    /// The first-byte or stall deadline passed (core's reaper, or the adapter's own timer).
    Timeout,
    /// The node answered with an HTTP error status.
    Status {
        /// The status code.
        code: u16,
        /// Ollama's "maximum pending requests" saturation answer.
        saturated: bool,
    },
    /// The answer was not valid HTTP or not the expected format.
    Protocol,
}

impl UpstreamFailure {
    /// The status a client gets when this failure ends an answer that was committed but not yet
    /// sent: a non-streamed answer the router gathers before writing it. 504 when the node went
    /// quiet (core reaped it), 502 for anything else. (A streamed answer's status, 200, went out
    /// with its head; the failure is told in the stream.)
    pub fn status_after_commit(&self) -> u16 {
        match self {
            UpstreamFailure::Timeout => 504,
            _ => 502,
        }
    }

    /// Whether another node may be tried (only before commit, which the router checks).
    /// Never for a 4xx (the client's fault) nor for saturation (retrying amplifies floods).
    pub fn retryable(&self) -> bool {
        match self {
            UpstreamFailure::Connect
            | UpstreamFailure::Reset
            | UpstreamFailure::Timeout
            | UpstreamFailure::Protocol => true,
            UpstreamFailure::Status { code, saturated } => *code >= 500 && !saturated,
        }
    }

    /// Whether this failure says the node is unhealthy (counts toward its breaker).
    pub fn blames_node(&self) -> bool {
        self.retryable()
    }

    /// Short name for traces.
    pub fn as_str(&self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Status { saturated: true, .. } => "saturated",
            UpstreamFailure::Status { .. } => "status",
            UpstreamFailure::Protocol => "protocol",
        }
    }
}

/// Recognises Ollama's saturation answer from its status and body.
pub fn is_saturation(code: u16, body: &str) -> bool {
    (code == 503 || code == 429) && body.contains("maximum pending requests")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(UpstreamFailure::Connect.retryable());
        assert!(UpstreamFailure::Timeout.retryable());
        assert!(UpstreamFailure::Status { code: 502, saturated: false }.retryable());
        assert!(!UpstreamFailure::Status { code: 503, saturated: true }.retryable());
        assert!(!UpstreamFailure::Status { code: 404, saturated: false }.retryable());
        assert!(!UpstreamFailure::Status { code: 400, saturated: false }.blames_node());
        assert!(is_saturation(503, r#"{"error":"server busy, maximum pending requests exceeded"}"#));
        assert!(!is_saturation(500, "maximum pending requests"));
    }
}
