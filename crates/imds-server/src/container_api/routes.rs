//! The configured credential paths (`[[container-credentials]]`): each path serves one role,
//! optionally behind an `Authorization` token.

use std::fmt;

use axum::{
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::Response,
};

use crate::container_api::{error, token_matches};

/// One credential URI: its path and the role it serves.
#[derive(Clone)]
pub struct ContainerRoute {
    /// The path (with query, if any) clients request, e.g. `/v2/credentials/app`.
    pub path: String,
    /// The role whose credentials the path serves.
    pub role_name: String,
    /// The `Authorization` value required, or `None` for relative-URI style routes.
    pub authorization_token: Option<String>,
}

impl fmt::Debug for ContainerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerRoute")
            .field("path", &self.path)
            .field("role_name", &self.role_name)
            .field(
                "authorization_token",
                &self.authorization_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a request matches no route it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No route has the request's path: `404`.
    UnknownPath,
    /// A method other than `GET`: `405`.
    WrongMethod,
    /// A missing or wrong `Authorization` token: `403`.
    WrongToken,
}

impl Refusal {
    /// The answer, in the `{"code", "message"}` form.
    pub(crate) fn response(self) -> Response {
        match self {
            Refusal::UnknownPath => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no credentials are served at this path",
            ),
            Refusal::WrongMethod => {
                let mut response = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "use GET",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                response
            }
            Refusal::WrongToken => error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "missing or wrong Authorization token",
            ),
        }
    }
}

/// The route a request is for, once its method and `Authorization` are checked.
pub(crate) fn find<'a>(
    routes: &'a [ContainerRoute],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<&'a ContainerRoute, Refusal> {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |path_and_query| path_and_query.as_str());
    let Some(route) = routes.iter().find(|route| route.path == target) else {
        return Err(Refusal::UnknownPath);
    };
    if method != Method::GET {
        return Err(Refusal::WrongMethod);
    }
    if let Some(expected) = &route.authorization_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if !token_matches(expected, presented) {
            return Err(Refusal::WrongToken);
        }
    }
    Ok(route)
}
