//! Integration tests of mamori-vault: one binary, one module per concern.

mod common;
mod crash;
mod export;
mod fault_injection;
mod fixture;
mod roundtrip;
