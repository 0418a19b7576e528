//! Hostile input: runtime.

#[allow(unused_imports)]
use super::*;
