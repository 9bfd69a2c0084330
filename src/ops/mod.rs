//! Synchronous, pure image operations: one per file. Never sees Tokio or the manifest.
