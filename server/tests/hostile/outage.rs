//! Hostile input: outage.

#[allow(unused_imports)]
use super::*;
