//! Hostile input: decode.

#[allow(unused_imports)]
use super::*;
