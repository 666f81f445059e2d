//! Integration tests of mamori-store: one binary, one module per concern.

mod common;
mod crash;
mod diskfull;
mod fixture;
mod recovery;
mod sqlite;
mod suite;
