//! Helpers shared by the conformance tests.
pub mod part1;
pub mod part2;
