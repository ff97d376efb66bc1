//! The JSON documents IMDS sends to guests, as explicit wire structs, and the layouts AWS writes
//! them in, as captured from real instances:
//!
//! - `to_aws_json`: objects with a two-space indent and `"Key" : value` (a space on each side of
//!   the colon); arrays inline, `[ {` ... `}, {` ... `} ]`, and an empty one as `[]`
//!   (`events/maintenance/scheduled`, banzaicloud/spot-termination-exporter#14; the empty list in
//!   cloud-init's crawl of a real instance, `tests/unittests/sources/test_ec2.py`).
//! - `to_compact_json`: no whitespace at all (`spot/instance-action`, runs-on/runs-on#277).
#![allow(
    missing_docs,
    reason = "a wire struct's fields are its JSON keys, in PascalCase, documented by the struct"
)]

use serde::Serialize;
use serde_json::ser::Formatter;

/// `iam/info`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IamInfo<'a> {
    pub code: &'static str,
    pub last_updated: &'a str,
    pub instance_profile_arn: &'a str,
    pub instance_profile_id: &'a str,
}

/// `iam/security-credentials/ROLE` when no valid credentials can be had: AWS's error document
/// (`Code` other than `Success`, a `Message`, `LastUpdated`), as quoted in aws/aws-cli#2060 and
/// boto/botocore#1519 from real instances.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleCredentialsError<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub last_updated: &'a str,
}

/// The container credentials endpoint's answer, as the ECS agent (`IAMRoleCredentials`) and the
/// EKS Pod Identity Agent (`EksCredentialsResponse`) send it: no `Code`, `Type` or `LastUpdated`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerCredentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub token: &'a str,
    pub expiration: &'a str,
}

/// `iam/security-credentials/ROLE` and `identity-credentials/ec2/security-credentials/ec2-instance`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleCredentials<'a> {
    pub code: &'a str,
    pub last_updated: &'a str,
    #[serde(rename = "Type")]
    pub kind: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub token: &'a str,
    pub expiration: &'a str,
}

/// `identity-credentials/ec2/info`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentityCredentialsInfo<'a> {
    pub code: &'static str,
    pub last_updated: &'a str,
    pub account_id: &'a str,
}

/// `dynamic/instance-identity/document`, fields in the order AWS documents them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDocument<'a> {
    pub account_id: &'a str,
    pub architecture: &'a str,
    pub availability_zone: &'a str,
    pub billing_products: Option<Vec<String>>,
    pub devpay_product_codes: Option<Vec<String>>,
    pub marketplace_product_codes: Option<Vec<String>>,
    pub image_id: &'a str,
    pub instance_id: &'a str,
    pub instance_type: &'a str,
    pub kernel_id: Option<&'a str>,
    pub pending_time: &'a str,
    pub private_ip: Option<String>,
    pub ramdisk_id: Option<&'a str>,
    pub region: &'a str,
    pub version: &'static str,
}

/// `spot/instance-action`, served compact.
#[derive(Serialize)]
pub struct SpotInstanceAction<'a> {
    pub action: &'a str,
    pub time: &'a str,
}

/// `events/recommendations/rebalance`, served compact like the Spot notice.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceRecommendation<'a> {
    pub notice_time: &'a str,
}

/// One entry of `events/maintenance/scheduled` or `events/maintenance/history`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MaintenanceEvent<'a> {
    pub not_before: String,
    pub code: &'a str,
    pub description: String,
    pub event_id: &'a str,
    /// Left out for events without an end (`instance-stop` and `instance-retirement` have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    pub state: &'static str,
}

/// Serialises `value` in AWS's indented layout.
pub fn to_aws_json<T: Serialize>(value: &T) -> String {
    serialize(value, AwsFormatter::default())
}

/// The member `AccountId` of `security-credentials-extended/ROLE` documents.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AccountIdMember<'a> {
    account_id: &'a str,
}

/// `document` (an object in AWS's layout, as `to_aws_json` writes it) with `"AccountId"` added as
/// its last member: the extended credentials document is the legacy one plus `AccountId`, last
/// (the SEP's fixtures, kept in aws-sdk-kotlin's `ImdsCredentialsProviderTestResources.kt` and
/// aws-sdk-go-v2's `provider_sep_test.go`). A document that is not such an object is returned
/// unchanged.
pub fn with_account_id(document: &[u8], account_id: &str) -> Vec<u8> {
    let member = to_aws_json(&AccountIdMember { account_id });
    // `{\n  "AccountId" : "..."\n}`: keep the member line, without the braces.
    let member = member
        .strip_prefix("{\n")
        .and_then(|rest| rest.strip_suffix("\n}"))
        .expect("a one-member object in AWS's layout");
    let Some(body) = document.strip_suffix(b"\n}") else {
        return document.to_vec();
    };
    let mut out = Vec::with_capacity(document.len() + member.len() + 4);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\n");
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(b"\n}");
    out
}

/// Serialises `value` without any whitespace.
pub fn to_compact_json<T: Serialize>(value: &T) -> String {
    serialize(value, serde_json::ser::CompactFormatter)
}

fn serialize<T: Serialize, F: Formatter>(value: &T, formatter: F) -> String {
    let mut out = Vec::with_capacity(512);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .expect("wire structs hold only strings, numbers and lists");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// AWS's layout: objects break lines and indent their members by two spaces per level, with
/// ` : ` between key and value; arrays stay on the line of their brackets, elements separated by
/// `, `, and do not add a level of indentation.
#[derive(Default)]
struct AwsFormatter {
    /// Open objects.
    depth: usize,
    /// True once the innermost open object or array has a member.
    has_member: bool,
}

impl AwsFormatter {
    fn indent<W: ?Sized + std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        for _ in 0..self.depth {
            writer.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl Formatter for AwsFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.has_member = false;
        writer.write_all(b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        if self.has_member {
            writer.write_all(b" ]")
        } else {
            writer.write_all(b"]")
        }
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        writer.write_all(if first { b" " } else { b", " })
    }
    fn end_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        self.has_member = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        self.has_member = false;
        writer.write_all(b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_member {
            writer.write_all(b"\n")?;
            self.indent(writer)?;
        }
        writer.write_all(b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        writer.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(writer)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b" : ")
    }
    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        self.has_member = true;
        Ok(())
    }
}

/// A request id shaped as AWS's are: a random UUID (version 4).
pub fn request_id() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xF_u128 << 76) & !(0x3_u128 << 62)) | (0x4_u128 << 76) | (0x2_u128 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        let id = request_id();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|part| part.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{id}");
        assert!("89ab".contains(&parts[3][..1]), "{id}");
        assert_ne!(request_id(), id);
    }

    #[test]
    fn layout_matches_real_imds() {
        let info = IamInfo {
            code: "Success",
            last_updated: "2022-02-13T13:17:17Z",
            instance_profile_arn: "arn:aws:iam::123456789012:instance-profile/S3AdminAccess",
            instance_profile_id: "AIPAVMQT32F2Q43IXV2TC",
        };
        assert_eq!(
            to_aws_json(&info),
            "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2022-02-13T13:17:17Z\",\n  \
             \"InstanceProfileArn\" : \"arn:aws:iam::123456789012:instance-profile/S3AdminAccess\",\n  \
             \"InstanceProfileId\" : \"AIPAVMQT32F2Q43IXV2TC\"\n}"
        );
        assert_eq!(to_aws_json(&Vec::<u8>::new()), "[]");
    }

    #[test]
    fn event_lists_are_laid_out_as_captured() {
        let event = |code, not_after: Option<&str>| MaintenanceEvent {
            not_before: "1 Jan 2021 02:00:00 GMT".to_owned(),
            code,
            description: "The instance is running on degraded hardware".to_owned(),
            event_id: "instance-event-07a1c1c08b77d4bf1",
            not_after: not_after.map(str::to_owned),
            state: "active",
        };
        // Byte for byte the capture in banzaicloud/spot-termination-exporter#14.
        assert_eq!(
            to_aws_json(&[event("instance-stop", None)]),
            "[ {\n  \"NotBefore\" : \"1 Jan 2021 02:00:00 GMT\",\n  \"Code\" : \"instance-stop\",\n  \
             \"Description\" : \"The instance is running on degraded hardware\",\n  \
             \"EventId\" : \"instance-event-07a1c1c08b77d4bf1\",\n  \"State\" : \"active\"\n} ]"
        );
        let two = to_aws_json(&[
            event("system-reboot", Some("1 Jan 2021 04:00:00 GMT")),
            event("system-reboot", None),
        ]);
        assert!(two.starts_with("[ {\n  \"NotBefore\""), "{two}");
        assert!(
            two.contains("\"NotAfter\" : \"1 Jan 2021 04:00:00 GMT\",\n"),
            "{two}"
        );
        assert!(two.contains("\n}, {\n  \"NotBefore\""), "{two}");
        assert!(two.ends_with("\n} ]"), "{two}");
        let parsed: serde_json::Value = serde_json::from_str(&two).unwrap();
        assert_eq!(parsed[1]["Code"], "system-reboot");
    }

    #[test]
    fn the_account_id_is_the_last_member_of_the_extended_document() {
        let legacy = to_aws_json(&RoleCredentials {
            code: "Success",
            last_updated: "2026-11-24T12:00:00Z",
            kind: "AWS-HMAC",
            access_key_id: "ASIAEXAMPLE",
            secret_access_key: "secret",
            token: "token",
            expiration: "2026-11-24T18:00:00Z",
        });
        let extended = with_account_id(legacy.as_bytes(), "123456789012");
        let text = std::str::from_utf8(&extended).unwrap();
        assert!(
            text.ends_with(
                "\"Expiration\" : \"2026-11-24T18:00:00Z\",\n  \"AccountId\" : \"123456789012\"\n}"
            ),
            "{text}"
        );
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed["AccountId"], "123456789012");
        assert_eq!(parsed["AccessKeyId"], "ASIAEXAMPLE");
        // Anything else is left alone.
        assert_eq!(with_account_id(b"[]", "123456789012"), b"[]");
    }

    #[test]
    fn spot_notices_are_compact() {
        assert_eq!(
            to_compact_json(&SpotInstanceAction {
                action: "terminate",
                time: "2025-03-31T16:34:24Z"
            }),
            r#"{"action":"terminate","time":"2025-03-31T16:34:24Z"}"#
        );
    }
}

/// A credentials file: keys as IMDS prints them (`Token`), or as `aws sts assume-role` does
/// (`SessionToken`, nested under `Credentials`). Other fields (`Expiration`, ...) are ignored.
/// Read by `fill_static_keys` for the config file's `credentials-file`, `imds ctl put-role
/// --credentials-file` and the console's upload alike.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsFile {
    credentials: Option<CredentialKeys>,
    #[serde(flatten)]
    keys: CredentialKeys,
}

/// The keys of a credentials file; no `Debug`, as they are secrets.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialKeys {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    session_token: Option<String>,
}

/// Why a credentials file was not taken. Its message never quotes the file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    /// The role's provider is not `static`.
    #[error("only the \"static\" provider reads a credentials file")]
    NotStatic,
    /// The role has keys of its own already.
    #[error("give the keys in the file or in the config, not both")]
    KeysGivenTwice,
    /// Not JSON of the expected shape (where, never what).
    #[error("is not JSON with string keys (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    /// `AccessKeyId` or `SecretAccessKey` is missing.
    #[error("lacks AccessKeyId or SecretAccessKey")]
    Incomplete,
}

/// Fills a `static` role's `access-key-id`, `secret-access-key` and `session-token` from the
/// text of a credentials file (`CredentialsFile`).
pub fn fill_static_keys(
    role: &mut imds_credentials::spec::RoleSpec,
    text: &str,
) -> Result<(), CredentialsFileError> {
    if role.provider.as_deref() != Some("static") {
        return Err(CredentialsFileError::NotStatic);
    }
    if role.access_key_id.is_some()
        || role.secret_access_key.is_some()
        || role.session_token.is_some()
    {
        return Err(CredentialsFileError::KeysGivenTwice);
    }
    // serde_json's message can quote a value (a secret), so only its place is kept.
    let file: CredentialsFile =
        serde_json::from_str(text).map_err(|error| CredentialsFileError::NotJson {
            line: error.line(),
            column: error.column(),
        })?;
    // `aws sts assume-role` nests the keys under `Credentials`.
    let keys = file.credentials.unwrap_or(file.keys);
    let (Some(access_key_id), Some(secret_access_key)) =
        (keys.access_key_id, keys.secret_access_key)
    else {
        return Err(CredentialsFileError::Incomplete);
    };
    role.access_key_id = Some(access_key_id);
    role.secret_access_key = Some(secret_access_key);
    role.session_token = keys.token.or(keys.session_token);
    Ok(())
}
