//! Hostile input: query_limits.

#[allow(unused_imports)]
use super::*;
