//! Why an authid was refused, and the answer each refusal becomes. An error
//! never contains the input.

/// Why an authid was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthIdError {
    Empty,
    TooLong,
    Malformed,
}

impl AuthIdError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthIdError::Empty => "missing_authid",
            AuthIdError::TooLong | AuthIdError::Malformed => "malformed_authid",
        }
    }
}

impl std::fmt::Display for AuthIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthIdError::Empty => "no authid",
            AuthIdError::TooLong => "authid too long",
            AuthIdError::Malformed => "authid malformed",
        })
    }
}

impl From<AuthIdError> for crate::error::BrokerError {
    fn from(e: AuthIdError) -> Self {
        match e {
            AuthIdError::Empty => crate::error::BrokerError::MissingAuthId,
            AuthIdError::TooLong | AuthIdError::Malformed => {
                crate::error::BrokerError::MalformedAuthId
            }
        }
    }
}
