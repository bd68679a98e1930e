//! Fallback rules (reference §3): the chain of models a request may use, whether a loaded model
//! of another name may substitute for it, and the auto-pull guardrail.

use crate::config::PolicyConfig;
use crate::fleet::heartbeat::ModelMeta;
use crate::ids::ModelName;
use crate::model::{self, Category};
use crate::request::{FallbackChoice, RequestKind, RequestSpec};

/// Longest fallback chain considered (the client's list is cut beyond it).
pub const MAX_CHAIN: usize = 8;

/// The requested model followed by the client's `fallback_models`, without repeats.
pub fn model_chain(spec: &RequestSpec) -> Vec<ModelName> {
    let mut chain = vec![spec.model.clone()];
    for m in &spec.fallback_models {
        if chain.len() == MAX_CHAIN {
            break;
        }
        if !m.as_str().is_empty() && !chain.contains(m) {
            chain.push(m.clone());
        }
    }
    chain
}

/// Whether VRAM-aware substitution is allowed for this request.
pub fn substitution_allowed(c: &PolicyConfig, spec: &RequestSpec) -> bool {
    match spec.fallback {
        FallbackChoice::Allow => true,
        FallbackChoice::Deny => false,
        FallbackChoice::Default => c.vram_fallback,
    }
}

/// Whether `candidate` (loaded somewhere) may serve a request for `requested`.
///
/// Never for an embedding request: vectors from another model live in another space (often of
/// another dimension), and a vector store built with the requested model would be silently
/// corrupted (ollama-herd never changed the model for embeddings either); the requested model is
/// loaded instead, or served where it is loaded. Never an embedding model for chat, never a
/// non-vision model for a request with images, and across categories only when configured.
pub fn may_substitute(
    c: &PolicyConfig,
    spec: &RequestSpec,
    requested_cat: Category,
    candidate: &ModelName,
    candidate_meta: Option<&ModelMeta>,
) -> bool {
    let cat = model::classify(candidate, candidate_meta);
    let want_embed = spec.kind == RequestKind::Embed;
    if want_embed || cat == Category::Embedding || cat == Category::Image {
        return false;
    }
    if spec.has_images && !model::accepts_images(candidate, candidate_meta) {
        return false;
    }
    cat == requested_cat || c.cross_category_fallback
}

/// Whether the auto-pull guardrail lets this name be downloaded: auto-pull on and the name on
/// the allow-list (exact, or a prefix written with a trailing `*`).
pub fn pull_allowed(c: &PolicyConfig, model: &ModelName) -> bool {
    c.auto_pull
        && c.pull_allow.iter().any(|pat| match pat.strip_suffix('*') {
            Some(prefix) => model.as_str().starts_with(prefix),
            None => ModelName::new(pat) == *model,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_dedups_and_bounds() {
        let mut s = RequestSpec::chat("a");
        s.fallback_models = ["a:latest", "b", "b", "c"].iter().map(|m| ModelName::new(m)).collect();
        let names: Vec<String> = model_chain(&s).iter().map(|m| m.to_string()).collect();
        assert_eq!(names, ["a:latest", "b:latest", "c:latest"]);
        s.fallback_models = (0..20).map(|i| ModelName::new(&format!("m{i}"))).collect();
        assert_eq!(model_chain(&s).len(), MAX_CHAIN);
    }

    #[test]
    fn substitution_rules() {
        let c = PolicyConfig::default();
        let chat = RequestSpec::chat("qwen3:8b");
        assert!(may_substitute(&c, &chat, Category::General, &ModelName::new("llama3.1:8b"), None));
        assert!(!may_substitute(&c, &chat, Category::General, &ModelName::new("qwen2.5-coder:7b"), None));
        assert!(!may_substitute(&c, &chat, Category::General, &ModelName::new("nomic-embed-text"), None));
        let cross = PolicyConfig { cross_category_fallback: true, ..PolicyConfig::default() };
        assert!(may_substitute(&cross, &chat, Category::General, &ModelName::new("qwen2.5-coder:7b"), None));
        let mut img = RequestSpec::chat("llava:13b");
        img.has_images = true;
        assert!(!may_substitute(&cross, &img, Category::Vision, &ModelName::new("llama3.1:8b"), None));
        assert!(may_substitute(&c, &img, Category::Vision, &ModelName::new("llava:7b"), None));
        let mut embed = RequestSpec::chat("nomic-embed-text");
        embed.kind = RequestKind::Embed;
        // Another embedding model's vectors would corrupt the caller's store: never.
        assert!(!may_substitute(&c, &embed, Category::Embedding, &ModelName::new("mxbai-embed-large"), None));
        assert!(!may_substitute(&cross, &embed, Category::Embedding, &ModelName::new("nomic-embed-text:v1.5"), None));
        assert!(!may_substitute(&cross, &embed, Category::Embedding, &ModelName::new("llama3.1:8b"), None));
        let mut strict = chat.clone();
        strict.fallback = FallbackChoice::Deny;
        assert!(!substitution_allowed(&c, &strict));
        assert!(substitution_allowed(&c, &chat));
    }

    #[test]
    fn pull_needs_both_switch_and_allow_list() {
        let mut c = PolicyConfig { pull_allow: vec!["qwen3:*".into(), "llama3.2".into()], ..PolicyConfig::default() };
        assert!(!pull_allowed(&c, &ModelName::new("qwen3:8b")), "off by default");
        c.auto_pull = true;
        assert!(pull_allowed(&c, &ModelName::new("qwen3:8b")));
        assert!(pull_allowed(&c, &ModelName::new("llama3.2:latest")));
        assert!(!pull_allowed(&c, &ModelName::new("llama3.2:1b")));
        assert!(!pull_allowed(&c, &ModelName::new("evil/model")));
    }
}
