//! Property tests of the server's pure helpers.

mod merge_patch;
