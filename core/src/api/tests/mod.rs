//! Worked examples from wire-api.md §11 and property tests for the api module.

mod anthropic;
mod ollama;
mod openai;
mod props;
