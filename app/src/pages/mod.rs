//! The routed pages.

pub mod explore;
pub mod home;
