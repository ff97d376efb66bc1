//! Kubernetes object names as EKS Pod Identity associations name them: a namespace is an RFC 1123
//! label (at most 63 characters), a service account an RFC 1123 subdomain (at most 253, labels
//! joined by dots).

/// Checks a namespace's name.
pub fn check_namespace(name: &str) -> Result<(), String> {
    check(name, 63, false)
}

/// Checks a service account's name.
pub fn check_service_account(name: &str) -> Result<(), String> {
    check(name, 253, true)
}

fn check(name: &str, max: usize, dots: bool) -> Result<(), String> {
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if name.is_empty() || name.len() > max || !labels_ok || (!dots && name.contains('.')) {
        return Err(format!(
            "must be 1 to {max} lower-case letters, digits and '-'{}, starting and ending with a letter or digit",
            if dots { " ('.' between parts)" } else { "" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_labels_and_service_accounts_subdomains() {
        assert!(check_namespace("shop").is_ok());
        assert!(check_namespace("kube-system").is_ok());
        assert!(check_namespace("a.b").is_err());
        assert!(check_namespace("Shop").is_err());
        assert!(check_namespace("-shop").is_err());
        assert!(check_namespace("").is_err());
        assert!(check_namespace(&"a".repeat(64)).is_err());
        assert!(check_service_account("cart.v2").is_ok());
        assert!(check_service_account("cart..v2").is_err());
        assert!(check_service_account("cart_v2").is_err());
        assert!(check_service_account(&"a".repeat(254)).is_err());
    }
}
