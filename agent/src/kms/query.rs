//! The query strings of the key interfaces (ETSI 014, SKIP): parameters percent-decoded, and a
//! parameter given twice refused, so that no two parts of a server can read one request
//! differently. Each interface answers a [`QueryError`] in its own format.

/// A query string that is not served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not valid UTF-8 once percent-decoded.
    #[error("the query string is not valid UTF-8")]
    NotUtf8,
    /// A parameter given more than once.
    #[error("query parameter {0} is given more than once")]
    Repeated(String),
}

/// The parameters of `raw`, in order, percent-decoded.
pub fn parameters(raw: Option<&str>) -> Result<Vec<(String, String)>, QueryError> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| QueryError::NotUtf8)
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let (key, value) = (decode(key)?, decode(value)?);
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(QueryError::Repeated(key));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_not_repeated() {
        assert_eq!(
            parameters(Some("number=2&size=%32%35%36")).unwrap(),
            [("number".into(), "2".into()), ("size".into(), "256".into())]
        );
        assert_eq!(
            parameters(Some("number=1&number=2")),
            Err(QueryError::Repeated("number".into()))
        );
        assert_eq!(parameters(Some("number=%ff")), Err(QueryError::NotUtf8));
        assert_eq!(parameters(None), Ok(Vec::new()));
    }
}
