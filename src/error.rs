//! What the edge needs from any error: a hint that tells the user what to do next.
//!
//! Every library module keeps its own error enum (thiserror) and implements [`Hint`] for it. The
//! command line's error type, [`Failure`], converts from any error that implements `Hint` and
//! from nothing else, capturing the hint as it converts: a command's `?` on a result whose error
//! type has no `Hint` does not compile, so a new error type cannot silently lose its hint.
//! The library itself never builds a `Failure`; it returns its typed errors.
use std::fmt::Display;

/// What the user can do about an error. Enums that wrap another module's error delegate to its
/// hint, so the most specific advice wins.
pub trait Hint {
    /// The `hint:` line, where there is something useful to say.
    fn hint(&self) -> Option<String>;
}

/// An error on its way to the user: the error (with its chain of causes, and any context added
/// on the way) and the hint captured from the typed error it started as.
///
/// An error type without [`Hint`] cannot become one:
/// ```compile_fail,E0277
/// #[derive(Debug)]
/// struct NoHint;
/// impl std::fmt::Display for NoHint {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("no hint")
///     }
/// }
/// impl std::error::Error for NoHint {}
///
/// fn command() -> Result<(), exp::error::Failure> {
///     Err(NoHint)?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    hint: Option<String>,
}

impl<E> From<E> for Failure
where
    E: std::error::Error + Hint + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let hint = error.hint();
        Failure { error: anyhow::Error::new(error), hint }
    }
}

impl Failure {
    /// The error and its causes: `chain()` to print them, `downcast_ref` to inspect one.
    pub fn error(&self) -> &anyhow::Error {
        &self.error
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Says what was being done when it failed ("cannot read x: <error>"); the hint stays.
    pub fn context(self, what: impl Display + Send + Sync + 'static) -> Failure {
        Failure { error: self.error.context(what), hint: self.hint }
    }
}

/// `anyhow::Context` for results whose error has a hint: `.context("reading the index")?` adds
/// the words and keeps the hint.
pub trait Context<T> {
    fn context<C: Display + Send + Sync + 'static>(self, what: C) -> Result<T, Failure>;
    fn with_context<C: Display + Send + Sync + 'static>(
        self,
        what: impl FnOnce() -> C,
    ) -> Result<T, Failure>;
}

impl<T, E: Into<Failure>> Context<T> for Result<T, E> {
    fn context<C: Display + Send + Sync + 'static>(self, what: C) -> Result<T, Failure> {
        self.map_err(|e| e.into().context(what))
    }

    fn with_context<C: Display + Send + Sync + 'static>(
        self,
        what: impl FnOnce() -> C,
    ) -> Result<T, Failure> {
        self.map_err(|e| e.into().context(what()))
    }
}

/// An ad-hoc error with a hint, for the few places where a dedicated variant would be noise.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted { message: message.into(), hint: hint.into() }
    }
}

impl Hint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// The command line's own I/O (the current folder, stdout): the message says it all.
impl Hint for std::io::Error {
    fn hint(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the thing broke")]
    struct Broke;

    impl Hint for Broke {
        fn hint(&self) -> Option<String> {
            Some("mend it".into())
        }
    }

    fn fails() -> Result<(), Broke> {
        Err(Broke)
    }

    #[test]
    fn a_failure_keeps_its_hint_through_context() {
        let f = fails().context("while testing").unwrap_err();
        assert_eq!(f.hint(), Some("mend it"));
        let chain: Vec<String> = f.error().chain().map(|c| c.to_string()).collect();
        assert_eq!(chain, ["while testing", "the thing broke"]);
        assert!(f.error().downcast_ref::<Broke>().is_some());
    }

    #[test]
    fn question_mark_converts_a_hinted_error() {
        fn run() -> Result<(), Failure> {
            fails()?;
            Ok(())
        }
        assert_eq!(run().unwrap_err().hint(), Some("mend it"));
    }
}
