//! Routes that name their role in the path, as local stand-ins for the ECS agent serve them:
//! - `/role-arn/ARN` (aws-vault's `--ecs-server`, `server/ecsserver.go`): everything after the
//!   prefix, percent-decoded, is the role ARN, so ARNs with a path (`role/team/app`) work.
//!   amazon-ecs-local-container-endpoints serves the same path for ARNs without a path.
//! - `/role/NAME` (amazon-ecs-local-container-endpoints, `handlers/credentials_handler.go`):
//!   the role by name.
//!
//! Either may end in one `/` (local-container-endpoints accepts it; no ARN or role name ends in
//! one). Each is served only when `[container-endpoint]` turns it on, and with an
//! `authorization-token` there every request must send it as `Authorization` (aws-vault
//! requires one; its value is `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
//!
//! A role ARN names the role whose provider assumes it (a `[[roles]]` entry with that
//! `role-arn`); failing that, the role named by the ARN's last segment, unless that role assumes
//! another ARN (`404`: serving another account's role under the ARN asked for would mislead).
//! The document's `RoleArn` is the ARN asked for.

use std::fmt;

use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use imds_credentials::spec::check_role_name;
use percent_encoding::percent_decode_str;

use crate::container_api::{account_of, token_matches, ContainerEndpoint, Found, Refusal};

/// The prefix of aws-vault's routes.
const ROLE_ARN_PREFIX: &str = "/role-arn/";
/// The prefix of amazon-ecs-local-container-endpoints' routes by name.
const ROLE_PREFIX: &str = "/role/";

/// `[container-endpoint]`: which routes that name their role are served.
#[derive(Clone, Default)]
pub struct PerRequestRoles {
    /// `/role-arn/ARN`.
    pub role_arn: bool,
    /// `/role/NAME`.
    pub role_name: bool,
    /// The `Authorization` value every request to them must carry, if any.
    pub authorization_token: Option<String>,
}

impl fmt::Debug for PerRequestRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerRequestRoles")
            .field("role_arn", &self.role_arn)
            .field("role_name", &self.role_name)
            .field(
                "authorization_token",
                &self.authorization_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The role a request's path names, `None` when the path is no route of this module (or the
/// route is off).
pub(crate) fn find(
    endpoint: &ContainerEndpoint,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Result<Found, Refusal>> {
    let settings = &endpoint.per_request;
    let path = uri.path();
    let (asked, by_arn) = match (
        path.strip_prefix(ROLE_ARN_PREFIX),
        path.strip_prefix(ROLE_PREFIX),
    ) {
        (Some(arn), _) if settings.role_arn => (arn, true),
        (_, Some(name)) if settings.role_name => (name, false),
        _ => return None,
    };
    Some(resolve(endpoint, method, headers, asked, by_arn))
}

fn resolve(
    endpoint: &ContainerEndpoint,
    method: &Method,
    headers: &HeaderMap,
    asked: &str,
    by_arn: bool,
) -> Result<Found, Refusal> {
    if method != Method::GET {
        return Err(Refusal::WrongMethod);
    }
    if let Some(expected) = &endpoint.per_request.authorization_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if !token_matches(expected, presented) {
            return Err(Refusal::WrongToken);
        }
    }
    let asked = asked.strip_suffix('/').unwrap_or(asked);
    let asked = percent_decode_str(asked).decode_utf8().map_err(|_| {
        if by_arn {
            Refusal::NotARoleArn
        } else {
            Refusal::NotARoleName
        }
    })?;
    let provider = endpoint.roles.provider();
    if !by_arn {
        check_role_name(&asked).map_err(|_| Refusal::NotARoleName)?;
        return Ok(Found {
            role_arn: endpoint.principal.role_arn(&endpoint.roles, &asked),
            role_name: asked.into_owned(),
        });
    }
    let role_arn = asked.into_owned();
    if account_of(&role_arn).is_none() {
        return Err(Refusal::NotARoleArn);
    }
    if let Some(role_name) = provider.role_named_by_arn(&role_arn) {
        return Ok(Found {
            role_name,
            role_arn,
        });
    }
    let role_name = role_arn
        .rsplit('/')
        .next()
        .filter(|name| check_role_name(name).is_ok())
        .ok_or(Refusal::NotARoleArn)?
        .to_owned();
    if provider.role_arn(&role_name).is_some() {
        return Err(Refusal::OtherArn(role_name));
    }
    Ok(Found {
        role_name,
        role_arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expect: Result<(&str, &str), Refusal>) {
        let endpoint = crate::container_api::tests::app_endpoint();
        let uri: Uri = path.parse().unwrap();
        let found = find(&endpoint, &Method::GET, &uri, &HeaderMap::new()).expect("a route");
        let found = found.map(|found| (found.role_name, found.role_arn));
        let expect = expect.map(|(name, arn)| (name.to_owned(), arn.to_owned()));
        assert_eq!(found, expect, "{path}");
    }

    #[test]
    fn arns_and_names_find_their_roles() {
        // A role whose provider assumes the ARN is named by it, whatever its last segment.
        check(
            "/role-arn/arn:aws:iam::444455556666:role/team/assumed",
            Ok(("assumed", "arn:aws:iam::444455556666:role/team/assumed")),
        );
        check(
            "/role/assumed",
            Ok(("assumed", "arn:aws:iam::444455556666:role/team/assumed")),
        );
        check(
            "/role-arn/arn:aws:iam::444455556666:role/other/app",
            Ok(("app", "arn:aws:iam::444455556666:role/other/app")),
        );
        check(
            "/role-arn/arn:aws:iam::111122223333:role/assumed",
            Err(Refusal::OtherArn("assumed".to_owned())),
        );
        check(
            "/role-arn/arn:aws:iam::111122223333:role/a%ZZ",
            Err(Refusal::NotARoleArn),
        );
        check("/role/%FF", Err(Refusal::NotARoleName));
    }

    #[test]
    fn routes_that_are_off_are_not_found_here() {
        let mut endpoint = crate::container_api::tests::app_endpoint();
        endpoint.per_request.role_arn = false;
        let uri: Uri = "/role-arn/arn:aws:iam::111122223333:role/app"
            .parse()
            .unwrap();
        assert!(find(&endpoint, &Method::GET, &uri, &HeaderMap::new()).is_none());
        let uri: Uri = "/v2/credentials/app".parse().unwrap();
        assert!(find(&endpoint, &Method::GET, &uri, &HeaderMap::new()).is_none());
    }

    #[test]
    fn a_token_guards_every_route_here() {
        let mut endpoint = crate::container_api::tests::app_endpoint();
        endpoint.per_request.authorization_token = Some("tok".to_owned());
        let uri: Uri = "/role/app".parse().unwrap();
        let refused = find(&endpoint, &Method::GET, &uri, &HeaderMap::new()).unwrap();
        assert_eq!(refused.unwrap_err(), Refusal::WrongToken);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("tok"));
        assert!(find(&endpoint, &Method::GET, &uri, &headers)
            .unwrap()
            .is_ok());
    }
}
