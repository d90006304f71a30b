//! Code provenance of a run: the git HEAD commit, dirty state and untracked files, via gix.
