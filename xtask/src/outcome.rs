//! What one row produced: its test counts, how long it took, and its verdict.

use std::ops::{Add, AddAssign};

/// Test counts, summed over every test binary (and doctest run) of a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    /// Counts from the three numbers.
    pub const fn new(passed: u64, failed: u64, ignored: u64) -> Self {
        Counts {
            passed,
            failed,
            ignored,
        }
    }

    /// Tests that actually ran (ignored ones did not).
    pub fn ran(self) -> u64 {
        self.passed + self.failed
    }
}

impl Add for Counts {
    type Output = Counts;
    fn add(self, other: Counts) -> Counts {
        Counts {
            passed: self.passed + other.passed,
            failed: self.failed + other.failed,
            ignored: self.ignored + other.ignored,
        }
    }
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Counts {
    fn sum<I: Iterator<Item = Counts>>(iter: I) -> Counts {
        iter.fold(Counts::default(), Add::add)
    }
}

/// The verdict on a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every test that ran passed, and at least one ran.
    Ok,
    /// At least one test failed.
    Failed,
    /// The command failed without reporting a failed test: a build error, a crashed binary.
    Error(String),
    /// The command succeeded but ran no test at all.
    NoTests,
    /// The command could not be started.
    NotRun(String),
}

impl Status {
    /// Decides a row's verdict from what its command reported.
    ///
    /// `why_unsuccessful` is asked only when the command exited unsuccessfully without
    /// any failed test, to say what went wrong instead.
    pub fn judge(
        counts: Counts,
        success: bool,
        why_unsuccessful: impl FnOnce() -> String,
    ) -> Status {
        if counts.failed > 0 {
            Status::Failed
        } else if !success {
            Status::Error(why_unsuccessful())
        } else if counts.ran() == 0 {
            Status::NoTests
        } else {
            Status::Ok
        }
    }

    pub fn is_ok(&self) -> bool {
        *self == Status::Ok
    }

    /// The text of the table's status column.
    pub fn label(&self) -> String {
        match self {
            Status::Ok => "ok".to_string(),
            Status::Failed => "FAILED".to_string(),
            Status::Error(why) => format!("ERROR: {why}"),
            Status::NoTests => "NO TESTS RAN".to_string(),
            Status::NotRun(why) => format!("NOT RUN: {why}"),
        }
    }
}

/// One finished row, as the table shows it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub backend: String,
    pub counts: Counts,
    pub seconds: f64,
    pub status: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_tests_win_over_exit_status() {
        assert_eq!(
            Status::judge(Counts::new(3, 1, 0), false, || unreachable!()),
            Status::Failed
        );
    }

    #[test]
    fn unsuccessful_exit_without_failures_is_an_error() {
        let status = Status::judge(Counts::new(3, 0, 0), false, || "build error".into());
        assert_eq!(status, Status::Error("build error".into()));
    }

    #[test]
    fn only_ignored_tests_means_no_tests_ran() {
        assert_eq!(
            Status::judge(Counts::new(0, 0, 4), true, String::new),
            Status::NoTests
        );
    }

    #[test]
    fn passing_tests_and_success_are_ok() {
        assert!(Status::judge(Counts::new(1, 0, 2), true, String::new).is_ok());
    }

    #[test]
    fn counts_sum_field_by_field() {
        let total: Counts = [Counts::new(1, 2, 3), Counts::new(10, 20, 30)]
            .into_iter()
            .sum();
        assert_eq!(total, Counts::new(11, 22, 33));
        assert_eq!(total.ran(), 33);
    }
}
