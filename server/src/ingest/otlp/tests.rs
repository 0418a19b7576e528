//! The mapping on requests built here; the goldens from an independent producer are in
//! `server/tests/otlp.rs`.
