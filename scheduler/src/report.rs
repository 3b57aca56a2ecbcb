//! What a periodic job did, as named counts: printed by `run-once`, logged after every run and
//! exported as metrics.

use std::fmt;

use sentinela_core::jobs::PeriodicJob;

/// Named counts of one run of a job, in the order the job added them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The job.
    pub job: PeriodicJob,
    counts: Vec<(&'static str, u64)>,
}

impl Report {
    /// An empty report whose counts start at zero in the order given (so a run that did nothing
    /// still prints every count).
    pub fn new(job: PeriodicJob, names: &[&'static str]) -> Self {
        Self {
            job,
            counts: names.iter().map(|&n| (n, 0)).collect(),
        }
    }

    /// Adds `n` to the count `name` (creating it if needed).
    pub fn add(&mut self, name: &'static str, n: u64) {
        match self.counts.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v += n,
            None => self.counts.push((name, n)),
        }
    }

    /// Adds every count of `other` (the same job run over another database).
    pub fn merge(&mut self, other: &Self) {
        for (name, n) in &other.counts {
            self.add(name, *n);
        }
    }

    /// The count `name` (0 when never added).
    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Every count, in order.
    pub fn counts(&self) -> &[(&'static str, u64)] {
        &self.counts
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.job.as_str())?;
        for (name, n) in &self.counts {
            write!(f, " {name}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_every_count_in_order() {
        let mut report = Report::new(PeriodicJob::Retention, &["deleted", "bytes_freed"]);
        report.add("bytes_freed", 10);
        report.add("bytes_freed", 5);
        report.add("file_errors", 1);
        assert_eq!(
            report.to_string(),
            "retention: deleted=0 bytes_freed=15 file_errors=1"
        );
        assert_eq!(report.get("bytes_freed"), 15);
        assert_eq!(report.get("missing"), 0);
    }
}
