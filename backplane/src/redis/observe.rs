//! Telling an observer of each Redis command (the node's traces: a span per
//! command, docs/metrics.md): [`super::RedisBackplane::observe`] installs one
//! [`CommandObserver`]; every call the backplane makes through its one
//! round-trip path (`Shared::call`, the same that feeds
//! `hubwire_redis_duration_seconds`) tells it the command when it starts, on
//! the task that sends it, and the [`Observed`] it answers is dropped when
//! the command ends (answered, failed, timed out or abandoned), told first of
//! a failure. Background work (heartbeats, sweeps, resyncs, delayed
//! unsubscribes) is told too; the observer decides what to follow.
//!
//! Without an observer a command costs one atomic load (the `OnceLock` read).

/// One command the backplane sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    /// The Redis command: `SADD`, `HGET`, `PUBLISH`, `EVALSHA` (a Lua script), ...
    pub name: &'a str,
    /// What it is for, as the backplane's errors name it (`SADD hubs`,
    /// `GET read position`, a script's file name).
    pub what: &'a str,
    /// The Lua script an `EVALSHA` runs (its file name without `.lua`:
    /// `join_group`, `take_token`, ...).
    pub script: Option<&'a str>,
}

impl<'a> Command<'a> {
    /// The command of a call named `what` (its first word: `SADD hubs` is an `SADD`).
    pub(super) fn plain(what: &'a str) -> Self {
        Self {
            name: what.split(' ').next().unwrap_or(what),
            what,
            script: None,
        }
    }

    /// The `EVALSHA` of script `file` (`join_group.lua`).
    pub(super) fn script(file: &'a str) -> Self {
        Self {
            name: "EVALSHA",
            what: file,
            script: Some(file.strip_suffix(".lua").unwrap_or(file)),
        }
    }
}

/// Told of each command as it starts; see the module docs.
pub trait CommandObserver: Send + Sync {
    /// `command` starts now, on the task that sends it; `None` to not follow it.
    fn command(&self, command: &Command<'_>) -> Option<Box<dyn Observed>>;
}

/// One observed command; its drop is the command's end.
pub trait Observed: Send {
    /// The command failed (`error` as the backplane reports it).
    fn failed(&mut self, error: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_by_their_first_word_and_scripts_by_file() {
        let sadd = Command::plain("SADD hubs");
        assert_eq!((sadd.name, sadd.what, sadd.script), ("SADD", "SADD hubs", None));
        assert_eq!(Command::plain("HMGET").name, "HMGET");
        let script = Command::script("join_group.lua");
        assert_eq!(
            (script.name, script.what, script.script),
            ("EVALSHA", "join_group.lua", Some("join_group"))
        );
    }
}
