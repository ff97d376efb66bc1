//! IAM role names: what an instance's `iam.role-name`, a `[[roles]]` entry, the control API's
//! `/v1/roles/{role_name}` and `imds env --role` accept. One rule for all of them.
//!
//! Source: the IAM API reference, `CreateRole`, `RoleName`: 1 to 64 characters matching
//! `[\w+=,.@-]+` (`\w` being ASCII letters, digits and `_`).

/// The longest role name IAM accepts.
pub const MAX_LEN: usize = 64;

/// Checks a role name as IAM does: 1 to 64 letters, digits and `+=,.@_-`. The error says what
/// to give instead.
pub fn check_role_name(name: &str) -> Result<(), String> {
    let valid_character =
        |character: char| character.is_ascii_alphanumeric() || "+=,.@_-".contains(character);
    if name.is_empty() || name.len() > MAX_LEN || !name.chars().all(valid_character) {
        return Err(format!(
            "{name:?} is not a role name (1 to 64 letters, digits and +=,.@_-, as IAM allows)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, valid: bool) {
        assert_eq!(check_role_name(name).is_ok(), valid, "{name:?}");
    }

    #[test]
    fn role_names_are_what_iam_accepts() {
        check("app-Role_1+=,.@", true);
        check(&"a".repeat(64), true);
        check("", false);
        check(&"a".repeat(65), false);
        check("a/b", false);
        check("two words", false);
        check("rôle", false);
    }
}
