//! The object store in `.exprepo/`: content-addressed objects, refs, index, worktree, gc, fsck.
pub mod remote;
