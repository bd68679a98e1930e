//! The SQLite trace store (being built).
