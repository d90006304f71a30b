//! Importing legacy run folders as tagged commits.
