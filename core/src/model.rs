//! What core knows about a model from its name and Ollama metadata: its category (for fallbacks),
//! a size estimate when no node reports one (reference §2.4), and whether it runs one request at
//! a time. A small curated table, then name heuristics.

use crate::fleet::heartbeat::ModelMeta;
use crate::ids::ModelName;

/// A model's kind of work, for same-category fallback (reference §11.1, plus `Embedding`, which
/// ollama-herd lumps into `general` and then happily substitutes for chat models).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// General chat.
    General,
    /// Reasoning / thinking models.
    Reasoning,
    /// Code models.
    Coding,
    /// Creative writing.
    Creative,
    /// Vision-language models.
    Vision,
    /// Text embedding models (never a substitute for a chat model, nor the reverse).
    Embedding,
    /// Image generation.
    Image,
}

impl Category {
    /// Lower-case name, as shown in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::General => "general",
            Category::Reasoning => "reasoning",
            Category::Coding => "coding",
            Category::Creative => "creative",
            Category::Vision => "vision",
            Category::Embedding => "embedding",
            Category::Image => "image",
        }
    }
}

/// Classifies a model: Ollama's reported capabilities win, then the name.
pub fn classify(name: &ModelName, meta: Option<&ModelMeta>) -> Category {
    if let Some(meta) = meta {
        let has = |c: &str| meta.capabilities.iter().any(|x| x == c);
        if has("embedding") && !has("completion") {
            return Category::Embedding;
        }
        if has("vision") {
            return Category::Vision;
        }
    }
    let n = name.as_str().to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if n.starts_with("x/") {
        Category::Image
    } else if any(&["embed", "nomic-bert", "bge-", "mxbai", "e5-", "minilm", "snowflake-arctic-embed"]) {
        Category::Embedding
    } else if any(&["llava", "vision", "moondream", "minicpm-v", "qwen2.5vl", "qwen3-vl", "gemma3"]) {
        Category::Vision
    } else if any(&["coder", "codestral", "devstral", "starcoder", "codellama"]) {
        Category::Coding
    } else if any(&["deepseek-r1", "phi-4-reasoning", "phi4-reasoning", "reasoning", "qwq", "gpt-oss"]) {
        Category::Reasoning
    } else if any(&["creative", "mistral-nemo", "story"]) {
        Category::Creative
    } else {
        Category::General
    }
}

/// Whether a model may serve a request with images.
pub fn accepts_images(name: &ModelName, meta: Option<&ModelMeta>) -> bool {
    match meta {
        Some(m) if !m.capabilities.is_empty() => m.capabilities.iter().any(|c| c == "vision"),
        _ => classify(name, meta) == Category::Vision,
    }
}

/// Families Ollama runs one request at a time (reference §4.2).
const SERIAL_FAMILIES: &[&str] = &[
    "mllama",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "qwen3next",
    "lfm2",
    "lfm2moe",
    "nemotron_h",
    "nemotron_h_moe",
    "nemotron_h_omni",
];

/// Whether Ollama decodes this model one request at a time whatever `OLLAMA_NUM_PARALLEL` says.
pub fn is_serial(meta: Option<&ModelMeta>) -> bool {
    let Some(m) = meta else { return false };
    let has = |c: &str| m.capabilities.iter().any(|x| x == c);
    m.format == "safetensors"
        || SERIAL_FAMILIES.contains(&m.family.as_str())
        || (has("embedding") && !has("completion"))
}

/// Name fragments that mark a thinking model when its capabilities are not known (§6.3).
pub const THINKING_NAME_MARKERS: [&str; 7] =
    ["deepseek-r1", "gpt-oss", "qwq", "phi-4-reasoning", "phi4-reasoning", "reasoning", "muse-glimmer"];

/// Whether this is a thinking model whose output budget gets inflated (reference §6.3).
pub fn is_thinking(name: &ModelName, meta: Option<&ModelMeta>) -> bool {
    if meta.is_some_and(|m| m.capabilities.iter().any(|c| c == "thinking")) {
        return true;
    }
    let n = name.as_str().to_ascii_lowercase();
    THINKING_NAME_MARKERS.iter().any(|w| n.contains(w))
}

/// Size when nothing better is known (reference §2.4): pessimistic, so unknown models don't
/// get squeezed onto small machines.
pub const UNKNOWN_SIZE_GB: f64 = 100.0;

/// Weight size from the name alone, biggest markers first (reference §2.4 step 3).
pub fn size_from_name_gb(name: &ModelName) -> Option<f64> {
    let n = name.as_str().to_ascii_lowercase();
    if n.contains("embed") || n.contains("nomic") {
        return Some(0.5);
    }
    const TABLE: &[(&[&str], f64)] = &[
        (&["671b"], 400.0),
        (&["480b"], 290.0),
        (&["405b"], 230.0),
        (&["235b"], 140.0),
        (&["122b"], 75.0),
        (&["120b"], 72.0),
        (&["70b", "72b"], 45.0),
        (&["32b"], 20.0),
        (&["30b", "27b"], 19.0),
        (&["22b"], 14.0),
        (&["14b", "13b"], 10.0),
        (&["8b", "7b"], 5.0),
        (&["4b", "3b"], 3.0),
        (&["1b", "0.6b", "0.5b"], 1.0),
    ];
    // Match whole size markers (":8b", "-8b", "8b-"), so "18b" does not read as "8b".
    let marker = |m: &str| {
        n.match_indices(m).any(|(i, _)| {
            let before = n[..i].chars().last();
            let after = n[i + m.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_digit() || c == '.') && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    TABLE.iter().find(|(ms, _)| ms.iter().any(|m| marker(m))).map(|&(_, gb)| gb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> ModelName {
        ModelName::new(s)
    }

    #[test]
    fn categories_from_names_and_capabilities() {
        assert_eq!(classify(&m("qwen2.5-coder:7b"), None), Category::Coding);
        assert_eq!(classify(&m("deepseek-r1:70b"), None), Category::Reasoning);
        assert_eq!(classify(&m("llava:13b"), None), Category::Vision);
        assert_eq!(classify(&m("nomic-embed-text"), None), Category::Embedding);
        assert_eq!(classify(&m("x/flux2-klein"), None), Category::Image);
        assert_eq!(classify(&m("llama3.3:70b"), None), Category::General);
        let vision = ModelMeta { capabilities: vec!["completion".into(), "vision".into()], ..Default::default() };
        assert_eq!(classify(&m("mistral-small3.2"), Some(&vision)), Category::Vision);
        assert!(accepts_images(&m("mistral-small3.2"), Some(&vision)));
        assert!(!accepts_images(&m("llama3.3:70b"), None));
    }

    #[test]
    fn sizes_follow_the_reference_table() {
        assert_eq!(size_from_name_gb(&m("llama3.3:70b")), Some(45.0));
        assert_eq!(size_from_name_gb(&m("qwen3:8b")), Some(5.0));
        assert_eq!(size_from_name_gb(&m("qwen3:30b-a3b")), Some(19.0));
        assert_eq!(size_from_name_gb(&m("deepseek-r1:671b")), Some(400.0));
        assert_eq!(size_from_name_gb(&m("qwen3:0.6b")), Some(1.0));
        assert_eq!(size_from_name_gb(&m("nomic-embed-text")), Some(0.5));
        assert_eq!(size_from_name_gb(&m("mystery")), None);
        assert_eq!(size_from_name_gb(&m("foo:18b")), None);
    }

    #[test]
    fn serial_and_thinking() {
        let safetensors = ModelMeta { format: "safetensors".into(), ..Default::default() };
        assert!(is_serial(Some(&safetensors)));
        let embed = ModelMeta { capabilities: vec!["embedding".into()], ..Default::default() };
        assert!(is_serial(Some(&embed)));
        assert!(!is_serial(None));
        assert!(is_thinking(&m("gpt-oss:20b"), None));
        let think = ModelMeta { capabilities: vec!["thinking".into()], ..Default::default() };
        assert!(is_thinking(&m("qwen3:8b"), Some(&think)));
        assert!(!is_thinking(&m("qwen3:8b"), None));
        for name in [
            "deepseek-r1:8b",
            "QwQ:32b",
            "phi4-reasoning:14b",
            "phi-4-reasoning:plus",
            "hf.co/x/my-reasoning-model:Q4",
            "muse-glimmer",
        ] {
            assert!(is_thinking(&m(name), None), "{name}");
        }
        for name in ["llama3.2", "qwen2.5-coder:7b", "phi-4:14b"] {
            assert!(!is_thinking(&m(name), None), "{name}");
        }
    }
}
