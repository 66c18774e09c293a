//! Writing images to block devices and files: sparse-aware, verified.
