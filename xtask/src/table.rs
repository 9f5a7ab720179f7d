//! The results table printed at the end of `test-all-targets`, and the summary line CI reads.
//!
//! The table is a Markdown pipe table whose columns are also padded, so it reads well both in
//! a terminal and pasted into a Markdown page.

use crate::outcome::{Counts, Outcome};

const HEADERS: [&str; 7] = [
    "target", "backend", "passed", "failed", "ignored", "seconds", "status",
];
/// Which columns hold numbers (aligned right).
const NUMERIC: [bool; 7] = [false, false, true, true, true, true, false];

/// Renders the table, one line per outcome, ending in a newline.
pub fn render(outcomes: &[Outcome]) -> String {
    let rows: Vec<[String; 7]> = outcomes.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    push_line(&mut out, &HEADERS.map(String::from), &widths);
    let rule = std::array::from_fn(|i| {
        if NUMERIC[i] {
            format!("{}:", "-".repeat(widths[i] - 1))
        } else {
            "-".repeat(widths[i])
        }
    });
    push_line(&mut out, &rule, &widths);
    for row in &rows {
        push_line(&mut out, row, &widths);
    }
    out
}

/// `N passed, M failed, K ignored`: the last line of `test-all-targets`, which CI reads.
pub fn summary_line(total: Counts) -> String {
    format!(
        "{} passed, {} failed, {} ignored",
        total.passed, total.failed, total.ignored
    )
}

fn cells(outcome: &Outcome) -> [String; 7] {
    [
        outcome.name.clone(),
        outcome.backend.clone(),
        outcome.counts.passed.to_string(),
        outcome.counts.failed.to_string(),
        outcome.counts.ignored.to_string(),
        format!("{:.1}", outcome.seconds),
        outcome.status.label(),
    ]
}

fn push_line(out: &mut String, cells: &[String; 7], widths: &[usize; 7]) {
    let mut line = String::from("|");
    for (i, cell) in cells.iter().enumerate() {
        let width = widths[i];
        if NUMERIC[i] {
            line += &format!(" {cell:>width$} |");
        } else {
            line += &format!(" {cell:<width$} |");
        }
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Status;

    fn outcome(
        name: &str,
        backend: &str,
        counts: (u64, u64, u64),
        seconds: f64,
        status: Status,
    ) -> Outcome {
        let (passed, failed, ignored) = counts;
        Outcome {
            name: name.into(),
            backend: backend.into(),
            counts: Counts {
                passed,
                failed,
                ignored,
            },
            seconds,
            status,
        }
    }

    #[test]
    fn renders_an_aligned_markdown_table() {
        let table = render(&[
            outcome(
                "x86_64-unknown-linux-gnu",
                "asm-x86_64",
                (128, 0, 2),
                12.34,
                Status::Ok,
            ),
            outcome(
                "riscv64gc-unknown-linux-gnu",
                "corosensei",
                (7, 1, 0),
                101.0,
                Status::Failed,
            ),
        ]);
        let expected = "\
| target                      | backend    | passed | failed | ignored | seconds | status |
| --------------------------- | ---------- | -----: | -----: | ------: | ------: | ------ |
| x86_64-unknown-linux-gnu    | asm-x86_64 |    128 |      0 |       2 |    12.3 | ok     |
| riscv64gc-unknown-linux-gnu | corosensei |      7 |      1 |       0 |   101.0 | FAILED |
";
        assert_eq!(table, expected);
    }

    #[test]
    fn a_long_status_widens_its_column() {
        let status = Status::NotRun("qemu-aarch64 not found".into());
        let table = render(&[outcome(
            "aarch64-unknown-linux-gnu",
            "asm-aarch64",
            (0, 0, 0),
            0.0,
            status,
        )]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].ends_with("| NOT RUN: qemu-aarch64 not found |"));
        // Every line has the same width, so the pipes line up.
        assert!(lines.iter().all(|line| line.len() == lines[0].len()));
    }

    #[test]
    fn an_empty_table_still_has_its_header() {
        assert_eq!(render(&[]).lines().count(), 2);
    }

    #[test]
    fn summary_line_is_what_ci_parses() {
        let total = Counts {
            passed: 135,
            failed: 1,
            ignored: 2,
        };
        assert_eq!(summary_line(total), "135 passed, 1 failed, 2 ignored");
    }
}
