//! `cargo xtask test-all-targets`: run the selected rows one after another, then print the
//! table and the summary line.

use std::time::Instant;

use crate::exec;
use crate::outcome::{Counts, Outcome, Status};
use crate::rows::{self, Row};
use crate::setup;
use crate::table;

/// Options of `test-all-targets` (and of `ci`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Only these rows, by name; all rows when `None`.
    pub targets: Option<Vec<String>>,
    /// Skip `setup` before running.
    pub no_setup: bool,
}

/// Runs the rows; `Ok(true)` if every row passed.
pub fn run(options: &Options) -> Result<bool, String> {
    let rows = select(rows::all(), options.targets.as_deref())?;
    if !options.no_setup {
        setup::run()?;
    }

    let mut outcomes = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        println!(
            "\n==> [{}/{}] {} (backend {})",
            i + 1,
            rows.len(),
            row.name,
            row.backend
        );
        outcomes.push(run_row(row));
    }

    let total: Counts = outcomes.iter().map(|o| o.counts).sum();
    println!("\n{}", table::render(&outcomes));
    println!("{}", table::summary_line(total));
    Ok(outcomes.iter().all(|o| o.status.is_ok()))
}

/// Keeps the rows named in `targets` (all rows if `None`), in table order.
fn select(rows: Vec<Row>, targets: Option<&[String]>) -> Result<Vec<Row>, String> {
    let Some(targets) = targets else {
        return Ok(rows);
    };
    if let Some(unknown) = targets
        .iter()
        .find(|t| !rows.iter().any(|row| row.name == t.as_str()))
    {
        let known: Vec<&str> = rows.iter().map(|row| row.name).collect();
        return Err(format!(
            "unknown target `{unknown}`; known: {}",
            known.join(", ")
        ));
    }
    Ok(rows
        .into_iter()
        .filter(|row| targets.iter().any(|t| t == row.name))
        .collect())
}

fn run_row(row: &Row) -> Outcome {
    let outcome = |counts, seconds, status| Outcome {
        name: row.name.to_string(),
        backend: row.backend.to_string(),
        counts,
        seconds,
        status,
    };
    if let Err(why) = row.kind.preflight() {
        eprintln!("cannot run {}: {why}", row.name);
        return outcome(Counts::default(), 0.0, Status::NotRun(why));
    }

    let mut cmd = row.kind.command();
    cmd.env("GREENLET_EXPECT_BACKEND", row.backend);
    println!("+ {}", exec::display(&cmd));
    let start = Instant::now();
    let captured = exec::tee(&mut cmd);
    let seconds = start.elapsed().as_secs_f64();
    match captured {
        Err(e) => {
            let why = format!("could not start {}: {e}", exec::display(&cmd));
            eprintln!("{why}");
            outcome(Counts::default(), seconds, Status::NotRun(why))
        }
        Ok(captured) => {
            let counts = row.kind.count(&captured);
            let status = Status::judge(counts, captured.status.success(), || {
                row.kind.explain_failure(&captured)
            });
            outcome(counts, seconds, status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|row| row.name).collect()
    }

    #[test]
    fn no_filter_keeps_every_row() {
        assert_eq!(select(rows::all(), None).unwrap().len(), rows::all().len());
    }

    #[test]
    fn filter_keeps_table_order() {
        let wanted = [
            "riscv64gc-unknown-linux-gnu".to_string(),
            "x86_64-unknown-linux-gnu".to_string(),
        ];
        let rows = select(rows::all(), Some(&wanted)).unwrap();
        assert_eq!(
            names(&rows),
            ["x86_64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu"]
        );
    }

    #[test]
    fn unknown_target_is_an_error_listing_the_known_ones() {
        let err = select(rows::all(), Some(&["mips-unknown-linux-gnu".to_string()]))
            .err()
            .unwrap();
        assert!(err.contains("mips-unknown-linux-gnu"), "{err}");
        assert!(err.contains("x86_64-unknown-linux-gnu"), "{err}");
    }
}
