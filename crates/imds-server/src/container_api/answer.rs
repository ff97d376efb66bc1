//! The credentials document each agent answers with, made from the set the role cache rendered.
//!
//! The cache renders one container document per set,
//! `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`, compact, `Expiration` in whole
//! seconds with `Z`; the agents' documents add one key each:
//! - ECS agent (`ecs-agent/credentials/manager.go`, `IAMRoleCredentials`): `RoleArn` first,
//!   `{"RoleArn","AccessKeyId","SecretAccessKey","Token","Expiration"}`; real `Expiration`s are
//!   whole-second UTC (`2016-09-16T08:05:02Z`, quoted in aws/aws-sdk-js#1142).
//! - EKS Pod Identity Agent (`pkg/credentials/model.go`, `EksCredentialsResponse`):
//!   `{"AccessKeyId","SecretAccessKey","Token","AccountId","Expiration"}`, `Expiration` as Go's
//!   `time.RFC3339Nano`, which writes no fraction for a whole second, so the cache's text is the
//!   agent's for every set whose expiration is a whole second (STS's always are).
//!
//! The key is spliced into the rendered bytes rather than the set rendered again, so that the
//! secrets live on only inside the cache's one rendering. Splicing is safe: the document is
//! `serde_json`'s output of a struct whose last key is `Expiration`, and a `"` inside a string
//! value is always escaped, so `,"Expiration":` occurs exactly once, as the key.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{container_api::go_json, credentials::RenderedCredentials};

/// The key the EKS document puts `AccountId` before.
const EXPIRATION_KEY: &[u8] = b",\"Expiration\":";

/// The ECS agent's document: `RoleArn` first; `None` for the error document.
pub fn ecs(credentials: &RenderedCredentials, role_arn: &str) -> Option<Bytes> {
    let document = credentials.container_json.as_ref()?;
    Some(role_arn_first(role_arn, document))
}

/// `document` (a JSON object) with `RoleArn` added as its first key, as the agents write it.
pub(crate) fn role_arn_first(role_arn: &str, document: &[u8]) -> Bytes {
    let role_arn = go_json::to_string(role_arn).expect("a string serialises");
    let mut body = BytesMut::with_capacity(document.len() + role_arn.len() + 12);
    body.put_slice(b"{\"RoleArn\":");
    body.put_slice(role_arn.as_bytes());
    body.put_u8(b',');
    body.put_slice(document.strip_prefix(b"{").unwrap_or(document));
    body.freeze()
}

/// The EKS Pod Identity Agent's document: `AccountId` before `Expiration`; `None` for the error
/// document.
pub fn eks(credentials: &RenderedCredentials, account_id: &str) -> Option<Bytes> {
    let document = credentials.container_json.as_ref()?;
    let split = document
        .windows(EXPIRATION_KEY.len())
        .position(|window| window == EXPIRATION_KEY)?;
    let account_id = go_json::to_string(account_id).expect("a string serialises");
    let mut body = BytesMut::with_capacity(document.len() + account_id.len() + 14);
    body.put_slice(&document[..split]);
    body.put_slice(b",\"AccountId\":");
    body.put_slice(account_id.as_bytes());
    body.put_slice(&document[split..]);
    Some(body.freeze())
}

/// The account of an IAM role ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`), if it names one.
pub fn account_of(role_arn: &str) -> Option<&str> {
    let mut fields = role_arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let valid_account = account.len() == 12 && account.bytes().all(|byte| byte.is_ascii_digit());
    (valid_account && resource.starts_with("role/")).then_some(account)
}

#[cfg(test)]
mod tests {
    use imds_credentials::{Credentials, Secret};
    use time::macros::datetime;

    use super::*;

    fn rendered() -> RenderedCredentials {
        RenderedCredentials::new(&Credentials {
            access_key_id: "ASIAEXAMPLEEXAMPLE01".to_owned(),
            secret_access_key: Secret::new("se\"cret,\"Expiration\":".to_owned()),
            session_token: Secret::new("token".to_owned()),
            last_updated: datetime!(2026-03-01 10:00:00 UTC),
            expiration: datetime!(2026-03-01 16:00:00 UTC),
            refresh_at: datetime!(2026-03-01 14:30:00 UTC),
        })
    }

    #[test]
    fn ecs_documents_start_with_the_role_arn() {
        let body = ecs(&rendered(), "arn:aws:iam::111122223333:role/app").unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"RoleArn":"arn:aws:iam::111122223333:role/app","AccessKeyId":"ASIAEXAMPLEEXAMPLE01","SecretAccessKey":"se\"cret,\"Expiration\":","Token":"token","Expiration":"2026-03-01T16:00:00Z"}"#
        );
    }

    #[test]
    fn eks_documents_carry_the_account_before_the_expiration() {
        let body = eks(&rendered(), "111122223333").unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"AccessKeyId":"ASIAEXAMPLEEXAMPLE01","SecretAccessKey":"se\"cret,\"Expiration\":","Token":"token","AccountId":"111122223333","Expiration":"2026-03-01T16:00:00Z"}"#
        );
    }

    /// The agents are Go programs: `<`, `>` and `&` in a value are written as Go's
    /// `encoding/json` writes them.
    #[test]
    fn documents_escape_as_the_go_agents_escape() {
        let rendered = RenderedCredentials::new(&Credentials {
            access_key_id: "ASIAEXAMPLEEXAMPLE01".to_owned(),
            secret_access_key: Secret::new("a<b>&c".to_owned()),
            session_token: Secret::new("t\u{2028}".to_owned()),
            last_updated: datetime!(2026-03-01 10:00:00 UTC),
            expiration: datetime!(2026-03-01 16:00:00 UTC),
            refresh_at: datetime!(2026-03-01 14:30:00 UTC),
        });
        let body = ecs(&rendered, "arn:aws:iam::111122223333:role/app").unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"RoleArn":"arn:aws:iam::111122223333:role/app","AccessKeyId":"ASIAEXAMPLEEXAMPLE01","SecretAccessKey":"a\u003cb\u003e\u0026c","Token":"t\u2028","Expiration":"2026-03-01T16:00:00Z"}"#
        );
        let body = eks(&rendered, "111122223333").unwrap();
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains(r#""SecretAccessKey":"a\u003cb\u003e\u0026c""#),);
    }

    #[test]
    fn the_error_document_has_no_container_form() {
        let unavailable = RenderedCredentials::unavailable(
            "app",
            datetime!(2026-03-01 10:00:00 UTC),
            datetime!(2026-03-01 10:00:01 UTC),
        );
        assert!(ecs(&unavailable, "arn:aws:iam::111122223333:role/app").is_none());
        assert!(eks(&unavailable, "111122223333").is_none());
    }

    #[track_caller]
    fn check_account(arn: &str, expect: Option<&str>) {
        assert_eq!(account_of(arn), expect, "{arn}");
    }

    #[test]
    fn accounts_come_from_role_arns() {
        check_account("arn:aws:iam::111122223333:role/app", Some("111122223333"));
        check_account(
            "arn:aws-cn:iam::111122223333:role/path/to/app",
            Some("111122223333"),
        );
        check_account("arn:aws:iam::11112222333:role/app", None);
        check_account("arn:aws:iam::111122223333:user/app", None);
        check_account("arn:aws:sts::111122223333:role/app", None);
        check_account("arn:aws:iam:eu-west-1:111122223333:role/app", None);
        check_account("app", None);
    }
}
