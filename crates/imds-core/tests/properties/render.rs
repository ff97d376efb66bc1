//! Timestamps and metadata options written and read back.
//!
//! - `parse_aws_timestamp(aws_timestamp(t))` is `t` to the second, for any instant from year 1
//!   to 9999 and any offset (IMDS timestamps are UTC, whole seconds).
//! - Every option value reads back from its text (`optional`/`required`, `enabled`/`disabled`,
//!   hop limits 1 to 64), and no other text is read as one.

use imds_core::{
    options::{HopLimit, HttpTokens, Toggle},
    render::{aws_timestamp, maintenance_time, parse_aws_timestamp},
};
use proptest::prelude::*;
use time::{OffsetDateTime, UtcOffset};

fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (
        // 0001-01-01 to 9999-12-31, the years the four-digit formats hold.
        -62_135_596_800i64..253_402_300_800,
        0u32..1_000_000_000,
        -86_399i32..86_400,
    )
        .prop_map(|(seconds, nanos, offset)| {
            let utc = OffsetDateTime::from_unix_timestamp(seconds)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap();
            // An offset that would push the local date out of range is left at UTC.
            UtcOffset::from_whole_seconds(offset)
                .ok()
                .and_then(|offset| utc.checked_to_offset(offset))
                .unwrap_or(utc)
        })
}

proptest! {
    #[test]
    fn timestamps_read_back_to_the_second(when in instant()) {
        let text = aws_timestamp(when);
        prop_assert_eq!(text.len(), 20, "{}", text);
        prop_assert!(text.ends_with('Z'));
        let read = parse_aws_timestamp(&text).unwrap();
        prop_assert_eq!(read.unix_timestamp(), when.unix_timestamp(), "{}", text);
        prop_assert_eq!(read.offset(), UtcOffset::UTC);
        let maintenance = maintenance_time(when);
        prop_assert!(maintenance.ends_with(" GMT"), "{}", maintenance);
    }

    #[test]
    fn option_values_read_back(text in prop_oneof!["[a-z]{0,9}", "(?s).{0,4}", "[+0-9]{1,4}"]) {
        for tokens in [HttpTokens::Optional, HttpTokens::Required] {
            prop_assert_eq!(tokens.to_string().parse::<HttpTokens>(), Ok(tokens));
        }
        for toggle in [Toggle::Enabled, Toggle::Disabled] {
            prop_assert_eq!(toggle.to_string().parse::<Toggle>(), Ok(toggle));
        }
        for value in HopLimit::MIN..=HopLimit::MAX {
            let limit = HopLimit::new(u32::from(value)).unwrap();
            prop_assert_eq!(limit.to_string().parse::<HopLimit>(), Ok(limit));
        }
        prop_assert_eq!(text.parse::<HttpTokens>().is_ok(), text == "optional" || text == "required");
        prop_assert_eq!(text.parse::<Toggle>().is_ok(), text == "enabled" || text == "disabled");
        if let Ok(limit) = text.parse::<HopLimit>() {
            prop_assert!((HopLimit::MIN..=HopLimit::MAX).contains(&limit.get()));
        }
    }
}
