//! Instance metadata options, named and valued as in EC2's `ModifyInstanceMetadataOptions`.
//!
//! Source: the EC2 API reference, `InstanceMetadataOptionsRequest`.
//!
//! Each option is a type that parses (`FromStr`, serde) only the values EC2 accepts and writes
//! them as EC2 does, so a command-line flag, a control-API body and a config key share one check.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Whether IMDSv2 session tokens are required (`HttpTokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HttpTokens {
    /// Tokenless (IMDSv1) requests are served and counted as `MetadataNoToken`.
    #[default]
    Optional,
    /// Tokenless requests get 401 and are counted as `MetadataNoTokenRejected`.
    Required,
}

/// An `enabled`/`disabled` switch, as `HttpEndpoint`, `HttpProtocolIpv6` and
/// `InstanceMetadataTags` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Toggle {
    /// `enabled`.
    Enabled,
    /// `disabled`.
    Disabled,
}

impl Toggle {
    /// True for `enabled`.
    pub fn is_enabled(self) -> bool {
        self == Toggle::Enabled
    }
}

/// The IP TTL (IPv6 hop limit) of token responses (`HttpPutResponseHopLimit`), 1 to 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "u32", into = "u8")]
pub struct HopLimit(u8);

/// An integer from `HopLimit::MIN` to `HopLimit::MAX`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for HopLimit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .minimum(Some(HopLimit::MIN))
            .maximum(Some(HopLimit::MAX))
            .description(Some("The IP TTL (IPv6 hop limit) of token responses."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for HopLimit {}

impl HopLimit {
    /// The smallest value EC2 accepts.
    pub const MIN: u8 = 1;
    /// The largest value EC2 accepts.
    pub const MAX: u8 = 64;

    /// Checks that `value` is within 1..=64.
    pub fn new(value: u32) -> Result<HopLimit, OptionError> {
        if (u32::from(Self::MIN)..=u32::from(Self::MAX)).contains(&value) {
            Ok(HopLimit(value as u8))
        } else {
            Err(OptionError::HopLimit(value.to_string()))
        }
    }

    /// The hop limit as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u32> for HopLimit {
    type Error = OptionError;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        HopLimit::new(value)
    }
}

impl From<HopLimit> for u8 {
    fn from(limit: HopLimit) -> u8 {
        limit.0
    }
}

impl Default for HopLimit {
    /// EC2's default is 1.
    fn default() -> Self {
        HopLimit(1)
    }
}

/// The metadata options of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataOptions {
    /// `HttpTokens`.
    pub http_tokens: HttpTokens,
    /// `HttpEndpoint`: when disabled, every request is refused with 403.
    pub http_endpoint: Toggle,
    /// `HttpPutResponseHopLimit`.
    pub http_put_response_hop_limit: HopLimit,
    /// `HttpProtocolIpv6`: when disabled, the IPv6 endpoint does not answer.
    pub http_protocol_ipv6: Toggle,
    /// `InstanceMetadataTags`: when disabled, there is no `tags/` category.
    pub instance_metadata_tags: Toggle,
}

impl Default for MetadataOptions {
    /// EC2's defaults for an instance launched without `--metadata-options`.
    fn default() -> Self {
        MetadataOptions {
            http_tokens: HttpTokens::Optional,
            http_endpoint: Toggle::Enabled,
            http_put_response_hop_limit: HopLimit::default(),
            http_protocol_ipv6: Toggle::Disabled,
            instance_metadata_tags: Toggle::Disabled,
        }
    }
}

/// A metadata option value that EC2 would not accept.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionError {
    /// Not `optional` or `required`.
    #[error("invalid http-tokens value {0:?}: expected `optional` or `required`")]
    HttpTokens(String),
    /// Not `enabled` or `disabled`.
    #[error("invalid value {0:?}: expected `enabled` or `disabled`")]
    Toggle(String),
    /// Outside 1..=64.
    #[error("invalid http-put-response-hop-limit {0:?}: expected an integer from 1 to 64")]
    HopLimit(String),
}

impl FromStr for HttpTokens {
    type Err = OptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "optional" => Ok(HttpTokens::Optional),
            "required" => Ok(HttpTokens::Required),
            _ => Err(OptionError::HttpTokens(text.to_owned())),
        }
    }
}

impl fmt::Display for HttpTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpTokens::Optional => "optional",
            HttpTokens::Required => "required",
        })
    }
}

impl FromStr for Toggle {
    type Err = OptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "enabled" => Ok(Toggle::Enabled),
            "disabled" => Ok(Toggle::Disabled),
            _ => Err(OptionError::Toggle(text.to_owned())),
        }
    }
}

impl fmt::Display for Toggle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Toggle::Enabled => "enabled",
            Toggle::Disabled => "disabled",
        })
    }
}

impl FromStr for HopLimit {
    type Err = OptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let value: u32 = text
            .parse()
            .map_err(|_| OptionError::HopLimit(text.to_owned()))?;
        HopLimit::new(value)
    }
}

impl fmt::Display for HopLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_hop_limit(text: &str, expect: Option<u8>) {
        assert_eq!(text.parse::<HopLimit>().ok().map(HopLimit::get), expect);
    }

    #[test]
    fn hop_limit_bounds() {
        check_hop_limit("1", Some(1));
        check_hop_limit("64", Some(64));
        check_hop_limit("0", None);
        check_hop_limit("65", None);
        check_hop_limit("-1", None);
        check_hop_limit("two", None);
    }

    #[test]
    fn names_round_trip() {
        for text in ["optional", "required"] {
            assert_eq!(text.parse::<HttpTokens>().unwrap().to_string(), text);
        }
        for text in ["enabled", "disabled"] {
            assert_eq!(text.parse::<Toggle>().unwrap().to_string(), text);
        }
        assert!("Enabled".parse::<Toggle>().is_err());
        assert!("REQUIRED".parse::<HttpTokens>().is_err());
    }

    #[track_caller]
    fn check_json<T>(json: &str, expect: Option<T>)
    where
        T: serde::de::DeserializeOwned + Serialize + PartialEq + fmt::Debug,
    {
        let parsed = serde_json::from_str::<T>(json).ok();
        assert_eq!(parsed, expect, "{json}");
        if let Some(value) = parsed {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
        }
    }

    #[test]
    fn json_takes_and_writes_the_values_ec2_does() {
        check_json(r#""required""#, Some(HttpTokens::Required));
        check_json(r#""optional""#, Some(HttpTokens::Optional));
        check_json::<HttpTokens>(r#""Required""#, None);
        check_json(r#""enabled""#, Some(Toggle::Enabled));
        check_json(r#""disabled""#, Some(Toggle::Disabled));
        check_json::<Toggle>(r#""on""#, None);
        check_json("1", Some(HopLimit::default()));
        check_json("64", HopLimit::new(64).ok());
        check_json::<HopLimit>("0", None);
        check_json::<HopLimit>("65", None);
        check_json::<HopLimit>("-1", None);
        check_json::<HopLimit>(r#""2""#, None);
    }

    #[test]
    fn defaults_are_ec2_defaults() {
        let options = MetadataOptions::default();
        assert_eq!(options.http_tokens, HttpTokens::Optional);
        assert!(options.http_endpoint.is_enabled());
        assert_eq!(options.http_put_response_hop_limit.get(), 1);
        assert!(!options.http_protocol_ipv6.is_enabled());
        assert!(!options.instance_metadata_tags.is_enabled());
    }
}
