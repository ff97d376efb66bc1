//! Host ids: the names hosts of a fleet go by in a shared store, in `--host-id`, in the control
//! API's `?host-id=` and in logs. One rule, for the server and the command line alike.

/// Checks a host id: 1 to 255 bytes, no spaces or control characters (it names a host in logs,
/// URLs and `--host-id`). The error says what to give instead.
pub fn check_host_id(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 255 {
        return Err("give 1 to 255 characters".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    Ok(())
}

/// `text` as a host id, for command-line parsers (`--host-id`); the error says what to give.
pub fn parse_host_id(text: &str) -> Result<String, String> {
    check_host_id(text)?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, valid: bool) {
        assert_eq!(check_host_id(text).is_ok(), valid, "{text:?}");
    }

    #[test]
    fn host_ids_are_short_printable_words() {
        check("host-1", true);
        check("rack7.eu-west-1a", true);
        check(&"h".repeat(255), true);
        check("", false);
        check(&"h".repeat(256), false);
        check("two words", false);
        check("tab\there", false);
        check("bell\u{7}", false);
    }
}
