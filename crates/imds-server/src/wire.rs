//! The JSON documents IMDS sends to guests, as explicit wire structs, and the layout AWS writes
//! them in: two-space indent and `"Key" : value` (a space on each side of the colon), as captured
//! from real instances.

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

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
    pub code: &'static str,
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
    pub code: &'static str,
    pub last_updated: &'a str,
    #[serde(rename = "Type")]
    pub kind: &'static str,
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

/// `spot/instance-action`.
#[derive(Serialize)]
pub struct SpotInstanceAction<'a> {
    pub action: &'a str,
    pub time: &'a str,
}

/// `events/recommendations/rebalance`.
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
    pub not_after: String,
    pub state: &'static str,
}

/// Serialises `value` in AWS's layout.
pub fn to_aws_json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::with_capacity(512);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, AwsFormatter::default());
    value
        .serialize(&mut serializer)
        .expect("wire structs hold only strings, numbers and lists");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// serde_json's pretty layout with two-space indent, but ` : ` between key and value.
struct AwsFormatter {
    pretty: PrettyFormatter<'static>,
}

impl Default for AwsFormatter {
    fn default() -> Self {
        AwsFormatter {
            pretty: PrettyFormatter::with_indent(b"  "),
        }
    }
}

impl Formatter for AwsFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.begin_array(writer)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        self.pretty.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object(writer)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b" : ")
    }
    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
