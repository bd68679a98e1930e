//! Machine probes (filled in below).
