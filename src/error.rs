//! What the edge needs from any library error: a hint that tells the user what to do next.
//!
//! Every module keeps its own error enum (thiserror) with a `hint()` method; this function is the
//! one place that knows them all, so the binary can print `hint: …` for any error in a chain.

/// The hint of the first error in `err`'s chain that has one.
pub fn hint_for(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(h) = hint_of(e) {
            return Some(h);
        }
        cause = e.source();
    }
    None
}

fn hint_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(h) = e.downcast_ref::<Hinted>() {
        return Some(h.hint.clone());
    }
    // Every module's error enum, each with its own `hint()`.
    macro_rules! hint_from {
        ($($error:ty),+ $(,)?) => {
            $(if let Some(e) = e.downcast_ref::<$error>() {
                return e.hint();
            })+
        };
    }
    hint_from!(
        crate::store::Error,
        crate::remote::Error,
        crate::eval::runner::RunError,
        crate::eval::config::ConfigError,
        crate::eval::report::ReportError,
        crate::diff::Error,
        crate::import::Error,
        crate::history::FilterError,
        crate::eval::overrides::OverrideError,
        crate::history::SinceError,
        crate::view::Error,
    );
    None
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
