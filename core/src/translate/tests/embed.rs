//! Embeddings answers: wire-api.md §3.3 → §6.3 (floats and base64) and → §3.4 (legacy).

use serde_json::{json, Value};

use crate::translate::base64::decode_f32_le;
use crate::translate::{legacy_embeddings_response, openai_embeddings_response, EmbeddingEncoding, ResponseError};

fn embed_answer() -> Value {
    json!({"model":"all-minilm","embeddings":[[0.0101,-0.0017,0.0500],[-0.0098,0.0604,0.0252]],
        "total_duration":14_143_917,"load_duration":1_019_500,"prompt_eval_count":16})
}

#[test]
fn float_list() {
    let (v, usage) = openai_embeddings_response(&embed_answer(), "all-minilm", EmbeddingEncoding::Float).unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "model": "all-minilm",
            "data": [{"object": "embedding", "embedding": [0.0101, -0.0017, 0.0500], "index": 0},
                     {"object": "embedding", "embedding": [-0.0098, 0.0604, 0.0252], "index": 1}],
            "usage": {"prompt_tokens": 16, "total_tokens": 16}})
    );
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (16, 0));
}

#[test]
fn base64_decodes_to_the_same_floats() {
    let answer = embed_answer();
    let (v, _) = openai_embeddings_response(&answer, "all-minilm", EmbeddingEncoding::Base64).unwrap();
    for (i, vector) in answer["embeddings"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f32> = vector.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let coded = v["data"][i]["embedding"].as_str().unwrap();
        assert_eq!(decode_f32_le(coded), Some(want));
        assert_eq!(coded.len(), 16, "3 f32 = 12 bytes = 16 base64 characters");
    }
}

#[test]
fn errors_and_malformed_answers() {
    let err = openai_embeddings_response(
        &json!({"error": "model \"x\" not found, try pulling it first"}),
        "x",
        EmbeddingEncoding::Float,
    );
    assert_eq!(
        err.unwrap_err(),
        ResponseError::Upstream { message: "model \"x\" not found, try pulling it first".into() }
    );
    for bad in [json!([]), json!({"embeddings": [["a"]]}), json!({"embeddings": {}}), json!({})] {
        let got = openai_embeddings_response(&bad, "m", EmbeddingEncoding::Base64);
        assert!(matches!(got, Err(ResponseError::Malformed { .. })), "{bad}");
        assert!(legacy_embeddings_response(&bad).is_err());
    }
}

#[test]
fn legacy_answer() {
    assert_eq!(legacy_embeddings_response(&embed_answer()).unwrap(), json!({"embedding": [0.0101, -0.0017, 0.0500]}));
    let empty = json!({"model": "all-minilm", "embeddings": []});
    assert_eq!(legacy_embeddings_response(&empty).unwrap(), json!({"embedding": []}));
}
