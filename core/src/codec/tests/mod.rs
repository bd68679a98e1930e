//! Worked examples and properties for the codecs.

mod chunked;
mod http1;
mod ndjson;
mod props;
mod sse;
