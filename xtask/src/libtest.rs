//! Reading libtest's human output: the `test result:` line each test binary and each
//! doctest run prints at its end.
//!
//! ```text
//! test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
//! test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.40s
//! ```

use crate::outcome::Counts;

/// Sums the counts of every `test result:` line in `output`.
pub fn count(output: &str) -> Counts {
    output.lines().filter_map(parse_result_line).sum()
}

/// Parses one `test result:` line; `None` for any other line.
///
/// Leading whitespace and ANSI colour codes are ignored. The line must carry all three of
/// `passed`, `failed` and `ignored`, so a test's own output that merely starts with
/// `test result:` is not counted by accident.
pub fn parse_result_line(line: &str) -> Option<Counts> {
    let line = strip_ansi(line);
    let rest = line.trim_start().strip_prefix("test result: ")?;
    let (verdict, rest) = rest.split_once(". ")?;
    if verdict != "ok" && verdict != "FAILED" {
        return None;
    }
    let (mut passed, mut failed, mut ignored) = (None, None, None);
    for field in rest.split(';') {
        // "12 passed", "0 filtered out", "finished in 0.01s" (skipped: not a number first).
        let Some((number, what)) = field.trim().split_once(' ') else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match what {
            "passed" => passed = Some(number),
            "failed" => failed = Some(number),
            "ignored" => ignored = Some(number),
            _ => {}
        }
    }
    Some(Counts::new(passed?, failed?, ignored?))
}

/// Removes `ESC [ ... <letter>` colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip '[' and the parameters up to and including the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_passing_result_line() {
        let line = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(parse_result_line(line), Some(Counts::new(12, 0, 1)));
    }

    #[test]
    fn parses_a_failing_result_line() {
        let line = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.40s";
        assert_eq!(parse_result_line(line), Some(Counts::new(3, 2, 0)));
    }

    #[test]
    fn parses_the_older_form_without_a_duration() {
        let line = "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_result_line(line), Some(Counts::new(0, 0, 0)));
    }

    #[test]
    fn ignores_colour_codes_and_indentation() {
        let line = "  test result: \u{1b}[32mok\u{1b}[0m. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!(parse_result_line(line), Some(Counts::new(2, 0, 0)));
    }

    #[test]
    fn rejects_lines_that_only_look_like_results() {
        assert_eq!(
            parse_result_line("test result: maybe. 1 passed; 0 failed; 0 ignored"),
            None
        );
        assert_eq!(parse_result_line("test result: ok. 1 passed"), None);
        assert_eq!(
            parse_result_line("test dead_greenlet_forwards_to_parent ... ok"),
            None
        );
        assert_eq!(parse_result_line(""), None);
    }

    #[test]
    fn sums_unit_tests_integration_tests_and_doctests() {
        let output = "\
running 2 tests
test stack::tests::guard_page_faults ... ok
test stack::tests::rounds_up ... ignored
test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 3 tests
test switch_returns_value ... FAILED
failures:
test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s

   Doc-tests greenlet_backends

running 4 tests
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.56s

all doctests ran in 0.57s; merged doctests compilation took 0.55s
";
        assert_eq!(count(output), Counts::new(7, 1, 1));
    }

    #[test]
    fn output_without_result_lines_counts_nothing() {
        assert_eq!(
            count("error[E0425]: cannot find value `x`\nerror: could not compile\n"),
            Counts::default()
        );
    }
}
