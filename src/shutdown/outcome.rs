//! How a shutdown ended and the process exit code it leads to: ideas of the whole
//! process, shared by the server's report and the lifecycle's.

use std::fmt;

use super::Reason;

/// How the shutdown ended; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything finished within the deadline.
    Clean,
    /// The drain deadline passed; what was left was force-closed.
    Deadline,
    /// A second signal (or [`Shutdown::force`](super::Shutdown::force)) cut the wait short.
    Forced,
}

impl Outcome {
    /// The worse of two outcomes: forced beats deadline beats clean.
    pub fn worst(self, other: Outcome) -> Outcome {
        fn rank(outcome: Outcome) -> u8 {
            match outcome {
                Outcome::Clean => 0,
                Outcome::Deadline => 1,
                Outcome::Forced => 2,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Clean => "clean",
            Outcome::Deadline => "deadline",
            Outcome::Forced => "forced",
        })
    }
}

/// The process exit code of a shutdown: 130 if a second signal
/// forced it, else 1 if a failure started it, else 124 if the deadline passed, else 0.
pub fn exit_code(reason: Reason, outcome: Outcome) -> u8 {
    match (outcome, reason) {
        (Outcome::Forced, _) => 130,
        (_, Reason::Error) => 1,
        (Outcome::Deadline, _) => 124,
        (Outcome::Clean, _) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        assert_eq!(exit_code(Reason::Signal, Outcome::Clean), 0);
        assert_eq!(exit_code(Reason::Trigger, Outcome::Clean), 0);
        assert_eq!(exit_code(Reason::Error, Outcome::Clean), 1);
        assert_eq!(exit_code(Reason::Signal, Outcome::Deadline), 124);
        assert_eq!(exit_code(Reason::Signal, Outcome::Forced), 130);
        assert_eq!(exit_code(Reason::Error, Outcome::Deadline), 1);
        assert_eq!(exit_code(Reason::Error, Outcome::Forced), 130);
    }

    #[test]
    fn worst_outcome_wins() {
        assert_eq!(Outcome::Clean.worst(Outcome::Deadline), Outcome::Deadline);
        assert_eq!(Outcome::Forced.worst(Outcome::Deadline), Outcome::Forced);
        assert_eq!(Outcome::Clean.worst(Outcome::Clean), Outcome::Clean);
    }
}
