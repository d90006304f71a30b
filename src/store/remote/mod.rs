//! Remotes: sharing run history with a folder or S3-compatible storage.
