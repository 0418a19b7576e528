//! Hostile input: time.

#[allow(unused_imports)]
use super::*;
