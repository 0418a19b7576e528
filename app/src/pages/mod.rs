//! The routed pages.

pub mod diff;
pub mod explore;
pub mod home;
pub mod open;
