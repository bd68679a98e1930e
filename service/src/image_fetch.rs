//! Fetches the remote images of OpenAI `image_url` parts, when the operator allows it
//! (`--image-url-hosts`; core's [`ImageUrlPolicy`] decides which hosts and addresses).
//!
//! Each fetch runs on a thread of its own (a blocking HTTP client, so both routers' runtimes
//! can use it), with a time limit per image, a size limit, no automatic redirects (each hop is
//! checked against the policy again, at most [`MAX_REDIRECTS`]), and a resolver that connects
//! only to addresses the policy allows, so a listed name cannot be pointed at the router's own
//! machine or the metadata service by its DNS.

use herd_core::api::image_url::{url_host, ImageUrlPolicy, MAX_REDIRECTS};
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How much one fetch may take.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    /// Largest image, bytes.
    pub max_bytes: usize,
    /// Longest fetch of one image (each redirect hop included).
    pub timeout: Duration,
}

/// Fetches `urls` in order; the first failure is the error, a message for the client's 400.
pub async fn fetch_all(
    policy: Arc<ImageUrlPolicy>,
    urls: Vec<String>,
    limits: FetchLimits,
) -> Result<Vec<Vec<u8>>, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("herd-image-fetch".into())
        .spawn(move || {
            let agent = agent(&policy, limits);
            let _ = tx.send(urls.iter().map(|u| fetch(&agent, &policy, u, limits)).collect());
        })
        .map_err(|e| format!("cannot start fetching images: {e}"))?;
    rx.await.map_err(|_| "fetching the images failed".to_string())?
}

fn agent(policy: &Arc<ImageUrlPolicy>, limits: FetchLimits) -> ureq::Agent {
    let policy = policy.clone();
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(limits.timeout)
        .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
        .resolver(move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = netloc
                .to_socket_addrs()?
                .filter(|a| match policy.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e.to_string());
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} has no address"));
                return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why));
            }
            Ok(allowed)
        })
        .build()
}

/// The absolute URL a `Location` names, from `current`.
fn redirect_target(current: &str, location: &str) -> Option<String> {
    if url_host(location).is_ok() {
        return Some(location.to_string());
    }
    let rest = location.strip_prefix('/')?;
    if rest.starts_with('/') {
        return None;
    }
    let scheme_end = current.find("://")? + 3;
    let authority_end = current[scheme_end..].find(['/', '?', '#']).map_or(current.len(), |i| scheme_end + i);
    Some(format!("{}/{rest}", &current[..authority_end]))
}

fn fetch(agent: &ureq::Agent, policy: &ImageUrlPolicy, url: &str, limits: FetchLimits) -> Result<Vec<u8>, String> {
    let shown: String = url.chars().take(200).collect();
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        policy.check_url(&current).map_err(|e| format!("image {shown}: {e}"))?;
        let resp = match agent.get(&current).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => return Err(format!("image {shown}: the server answered {code}")),
            Err(ureq::Error::Transport(t)) => {
                // The resolver's refusal is the policy's message.
                let why = t.to_string();
                return Err(format!("image {shown}: {why}"));
            }
        };
        if (300..400).contains(&resp.status()) {
            let location = resp.header("location").unwrap_or("");
            current = redirect_target(&current, location)
                .ok_or_else(|| format!("image {shown}: a redirect to {location:?} the router does not follow"))?;
            continue;
        }
        if resp.status() != 200 {
            return Err(format!("image {shown}: the server answered {}", resp.status()));
        }
        let ctype = resp.content_type().to_ascii_lowercase();
        if !(ctype.starts_with("image/") || ctype == "application/octet-stream") {
            return Err(format!("image {shown}: the server sent {ctype:?}, not an image"));
        }
        if resp
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|n| n > limits.max_bytes as u64)
        {
            return Err(format!("image {shown}: larger than the router's limit of {} bytes", limits.max_bytes));
        }
        let mut out = Vec::new();
        resp.into_reader()
            .take(limits.max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("image {shown}: {e}"))?;
        if out.len() > limits.max_bytes {
            return Err(format!("image {shown}: larger than the router's limit of {} bytes", limits.max_bytes));
        }
        if out.is_empty() {
            return Err(format!("image {shown}: the server sent no bytes"));
        }
        return Ok(out);
    }
    Err(format!("image {shown}: more than {MAX_REDIRECTS} redirects"))
}

#[cfg(test)]
mod tests {
    use super::redirect_target;

    #[test]
    fn redirects_resolve_against_the_current_url() {
        assert_eq!(redirect_target("http://a.com/x/y.png?q", "/z.png").as_deref(), Some("http://a.com/z.png"));
        assert_eq!(redirect_target("http://a.com", "https://b.com/i").as_deref(), Some("https://b.com/i"));
        assert_eq!(redirect_target("http://a.com/x", "//evil.com/i"), None);
        assert_eq!(redirect_target("http://a.com/x", "file:///etc/passwd"), None);
    }
}
