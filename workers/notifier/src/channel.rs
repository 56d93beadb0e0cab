//! Channel names and who may subscribe to them.

use std::fmt;

use contracts::JobId;

/// A channel: `job:<id>` (one job's events) or `user:<sub>` (all of a user's jobs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    Job(String),
    User(String),
}

impl Channel {
    /// Parses `job:<id>` or `user:<sub>`; the error says what a valid name looks like.
    pub fn parse(name: &str) -> Result<Channel, String> {
        let hint = "a channel is `job:<job id>` or `user:<your sub>`";
        match name.split_once(':') {
            Some(("job", id)) => JobId::parse(id)
                .map(|id| Channel::Job(id.to_string()))
                .map_err(|e| format!("channel {name:?}: {e}")),
            Some(("user", sub)) if !sub.is_empty() => Ok(Channel::User(sub.to_owned())),
            _ => Err(format!("channel {name:?} is not valid: {hint}")),
        }
    }

    pub fn job(id: impl fmt::Display) -> Channel {
        Channel::Job(id.to_string())
    }

    pub fn user(sub: impl Into<String>) -> Channel {
        Channel::User(sub.into())
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Job(id) => write!(f, "job:{id}"),
            Channel::User(sub) => write!(f, "user:{sub}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_explain() {
        let id = JobId::generate();
        let job = Channel::parse(&format!("job:{id}")).expect("a job channel");
        assert_eq!(job.to_string(), format!("job:{id}"));
        assert_eq!(
            Channel::parse("user:alice"),
            Ok(Channel::User("alice".into()))
        );
        let err = Channel::parse("jobs:1").expect_err("unknown prefix");
        assert!(err.contains("job:<job id>"), "{err}");
        assert!(Channel::parse("user:").is_err());
        assert!(Channel::parse("job:not a job id").is_err());
    }
}
