use std::fmt;

/// Why a rule (or a whole file) could not be loaded: where, and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// The file as the caller named it.
    pub path: String,
    /// 1-based line, when the problem has a position.
    pub line: Option<usize>,
    /// The rule's title or id, when known.
    pub rule: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not valid YAML (incl. duplicate keys).
    Yaml,
    /// Valid YAML that is not a valid Sigma document.
    Schema,
    /// A bad condition expression.
    Condition,
    /// A bad modifier chain or value (invalid regex, CIDR, base64 of a wildcard…).
    Value,
    /// A `%placeholder%` with no value in the values file.
    Placeholder,
    /// A correlation or filter referring to a rule that is not loaded.
    Reference,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, " ({r})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Error {}

/// An error before its file and rule are known; [`crate::parse_file`] attaches them.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: Option<usize>,
    pub kind: ErrorKind,
    pub message: String,
}

impl Problem {
    pub(crate) fn at(line: usize, kind: ErrorKind, message: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            kind,
            message: message.into(),
        }
    }
}

pub(crate) type PResult<T> = std::result::Result<T, Problem>;
