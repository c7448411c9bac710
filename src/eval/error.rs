//! Why a run cannot be prepared or evaluated.

/// What the callback of [`super::Run::for_each_finding`] or [`super::Run::stream`] may fail
/// with (any error its writer has); passed through as [`Error::Emit`].
pub type EmitError = Box<dyn std::error::Error + Send + Sync>;

/// A run that cannot be prepared or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No evaluation date was given and the data has none to default to.
    #[error(
        "the data has no dates, so --as-of cannot default to the latest one; give --as-of YYYY-MM-DD"
    )]
    NoDates,
    /// A period bound names a parameter the policy set does not declare.
    #[error("period `{period}`: unknown parameter `{param}`")]
    UnknownParameter {
        /// The period.
        period: String,
        /// The parameter.
        param: String,
    },
    /// A period bound's parameter is not a date on the evaluation date.
    #[error("period `{period}`: parameter `{param}` is `{value}`, not a date")]
    ParameterNotDate {
        /// The period.
        period: String,
        /// The parameter.
        param: String,
        /// Its value in force (as TOML writes it).
        value: String,
    },
    /// A period bound's expression failed.
    #[error("period `{period}`: `{expr}` failed: {message}")]
    BoundFailed {
        /// The period.
        period: String,
        /// The expression.
        expr: String,
        /// What went wrong ([`crate::script::describe_error`]).
        message: String,
    },
    /// A period bound's expression gave something that is not a date.
    #[error("period `{period}`: `{expr}` gave `{value}`, not a date")]
    BoundNotDate {
        /// The period.
        period: String,
        /// The expression.
        expr: String,
        /// What it gave.
        value: String,
    },
    /// A subject kind's table is not in the schema (a checked policy set has it).
    #[error("subject table")]
    SubjectTable {
        /// The subject kind.
        kind: String,
        /// The table.
        table: String,
    },
    /// A subject kind's table has no key (a checked policy set has one).
    #[error("subject table has a key")]
    SubjectKey {
        /// The subject kind.
        kind: String,
        /// The table.
        table: String,
    },
    /// A subject kind's key column does not hold ids (a checked policy set's does).
    #[error("subject key is not an id")]
    SubjectKeyNotId {
        /// The subject kind.
        kind: String,
        /// The table.
        table: String,
    },
    /// A thread evaluating the rules panicked.
    #[error("evaluating the rules failed")]
    Panicked,
    /// The callback given the findings failed; its error, unchanged.
    #[error(transparent)]
    Emit(EmitError),
}
