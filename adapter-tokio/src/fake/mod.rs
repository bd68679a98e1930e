//! The simulated Ollama server (being built).
