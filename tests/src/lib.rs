//! Helpers shared by the conformance tests.
