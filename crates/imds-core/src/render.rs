//! The text shapes of IMDS values that are not plain strings: timestamps.

use time::{
    format_description::BorrowedFormatItem, macros::format_description, OffsetDateTime, UtcOffset,
};

/// `2026-11-24T12:00:00Z`: the format of `LastUpdated`, `Expiration`, `pendingTime`, Spot
/// `time` and rebalance `noticeTime`. botocore parses `Expiration` with exactly
/// `%Y-%m-%dT%H:%M:%SZ`, so there are never fractional seconds.
const AWS_TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `21 Jan 2019 09:00:43 GMT`: the format of `NotBefore`/`NotAfter` in maintenance events
/// (EC2 User Guide, "Scheduled events for your instances").
const MAINTENANCE_TIME: &[BorrowedFormatItem<'static>] = format_description!(
    "[day padding:none] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// `Tue, 01 Dec 2026 21:15:15 GMT`: the IMF-fixdate of HTTP (RFC 9110 §5.6.7), as in the
/// `Last-Modified` header real IMDS sends with metadata answers.
const HTTP_DATE: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Formats `when` as IMDS writes credential and identity timestamps, in UTC.
pub fn aws_timestamp(when: OffsetDateTime) -> String {
    when.to_offset(UtcOffset::UTC)
        .format(AWS_TIMESTAMP)
        .expect("a UTC date with a four-digit year always formats")
}

/// Parses a timestamp written as `aws_timestamp` writes it.
pub fn parse_aws_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    time::PrimitiveDateTime::parse(text, AWS_TIMESTAMP).map(|when| when.assume_utc())
}

/// `2026-03-01T10:00:01.123456789Z`, trailing zeros of the fraction trimmed and no fraction at
/// all for whole seconds: Go's `time.RFC3339Nano`, in which the ECS agent writes every timestamp
/// of the task metadata endpoint (`CreatedAt`, `PullStartedAt`, stats' `read`, ...).
pub fn rfc3339_nano(when: OffsetDateTime) -> String {
    let when = when.to_offset(UtcOffset::UTC);
    let mut text = when
        .format(AWS_TIMESTAMP)
        .expect("a UTC date with a four-digit year always formats");
    let nanoseconds = when.nanosecond();
    if nanoseconds != 0 {
        let fraction = format!("{nanoseconds:09}");
        text.pop();
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
        text.push('Z');
    }
    text
}

/// Parses an RFC 3339 timestamp (`rfc3339_nano`'s, or any other offset and precision).
pub fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
}

/// Formats `when` as maintenance events write `NotBefore` and `NotAfter`.
pub fn maintenance_time(when: OffsetDateTime) -> String {
    when.to_offset(UtcOffset::UTC)
        .format(MAINTENANCE_TIME)
        .expect("a UTC date with a four-digit year always formats")
}

/// Formats `when` as an HTTP date (IMF-fixdate), in UTC.
pub fn http_date(when: OffsetDateTime) -> String {
    when.to_offset(UtcOffset::UTC)
        .format(HTTP_DATE)
        .expect("a UTC date with a four-digit year always formats")
}

/// Parses a time written as `maintenance_time` writes it.
pub fn parse_maintenance_time(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    time::PrimitiveDateTime::parse(text, MAINTENANCE_TIME).map(|when| when.assume_utc())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn formats() {
        let when = datetime!(2019-01-02 09:00:43.250 UTC);
        assert_eq!(aws_timestamp(when), "2019-01-02T09:00:43Z");
        assert_eq!(maintenance_time(when), "2 Jan 2019 09:00:43 GMT");
        assert_eq!(http_date(when), "Wed, 02 Jan 2019 09:00:43 GMT");
        // The date of the `Last-Modified` captured in Netflix/titus-executor#633.
        assert_eq!(
            http_date(datetime!(2021-05-10 23:03:35 UTC)),
            "Mon, 10 May 2021 23:03:35 GMT"
        );
        let offset = datetime!(2019-01-02 10:00:43 +01:00);
        assert_eq!(aws_timestamp(offset), "2019-01-02T09:00:43Z");
    }

    #[test]
    fn nanosecond_timestamps_are_go_s() {
        let check = |when: OffsetDateTime, expect: &str| {
            assert_eq!(rfc3339_nano(when), expect);
            assert_eq!(parse_rfc3339(expect).unwrap(), when);
        };
        check(
            datetime!(2020-10-02 00:15:07.620912337 UTC),
            "2020-10-02T00:15:07.620912337Z",
        );
        check(
            datetime!(2020-10-02 00:15:07.5 UTC),
            "2020-10-02T00:15:07.5Z",
        );
        check(datetime!(2020-10-02 00:15:07 UTC), "2020-10-02T00:15:07Z");
        check(
            datetime!(2020-10-02 02:15:07.000001 +02:00),
            "2020-10-02T00:15:07.000001Z",
        );
    }

    #[test]
    fn parse_round_trips() {
        let when = datetime!(2026-11-24 12:00:00 UTC);
        assert_eq!(parse_aws_timestamp(&aws_timestamp(when)).unwrap(), when);
        assert!(parse_aws_timestamp("2026-11-24T12:00:00.5Z").is_err());
        assert!(parse_aws_timestamp("2026-11-24 12:00:00").is_err());
        for when in [
            datetime!(2019-01-02 09:00:43 UTC),
            datetime!(2027-12-21 23:59:59 UTC),
        ] {
            assert_eq!(
                parse_maintenance_time(&maintenance_time(when)).unwrap(),
                when
            );
        }
        assert!(parse_maintenance_time("2 Jan 2019 09:00:43").is_err());
    }
}
