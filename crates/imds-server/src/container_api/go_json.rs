//! JSON written as Go's `encoding/json` writes it, for the documents of the agents imds stands in
//! for on the container listener (the ECS agent and the EKS Pod Identity Agent are Go programs).
//!
//! `encoding/json` escapes what JSON requires and, in every string (keys too), also `<`, `>` and
//! `&` as `\u003c`, `\u003e`, `\u0026` (its `HTMLEscape` default, which the agents never turn off)
//! and U+2028, U+2029 as `\u2028`, `\u2029`. serde_json writes those five characters as they are;
//! [`GoFormatter`] is serde_json's compact formatter with those escapes added, so the bytes are
//! the agents' while every other rule stays serde_json's.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// serde_json's compact layout (`Formatter`'s defaults are its `CompactFormatter`), strings
/// escaped as Go's `encoding/json` escapes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

/// The escape Go writes for `c`, if it escapes it beyond what JSON requires.
fn go_escape(c: char) -> Option<&'static [u8]> {
    match c {
        '<' => Some(b"\\u003c"),
        '>' => Some(b"\\u003e"),
        '&' => Some(b"\\u0026"),
        '\u{2028}' => Some(b"\\u2028"),
        '\u{2029}' => Some(b"\\u2029"),
        _ => None,
    }
}

impl Formatter for GoFormatter {
    // serde_json hands over a string's runs that need no JSON escape; Go's extra escapes are
    // made here, everything else is written as serde_json's compact formatter would.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if let Some(escape) = go_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                writer.write_all(escape)?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as compact JSON in Go's escaping.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// `value` as compact JSON in Go's escaping, as text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let bytes = to_vec(value)?;
    // The formatter writes only ASCII escapes and whole UTF-8 fragments of the input.
    Ok(String::from_utf8(bytes).expect("serde_json writes UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        // Go: json.Marshal("a<b>&c\u2028d\u2029\"\\\n\u0001é😀")
        let text = to_string("a<b>&c\u{2028}d\u{2029}\"\\\n\u{1}é😀").unwrap();
        assert_eq!(
            text,
            r#""a\u003cb\u003e\u0026c\u2028d\u2029\"\\\n\u0001é😀""#
        );
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "a<b>&c\u{2028}d\u{2029}\"\\\n\u{1}é😀");
    }

    #[test]
    fn keys_are_escaped_too_and_the_layout_is_compact() {
        let mut map = std::collections::BTreeMap::new();
        map.insert("k<&>", vec![1, 2]);
        assert_eq!(to_string(&map).unwrap(), r#"{"k\u003c\u0026\u003e":[1,2]}"#);
        assert_eq!(to_string("plain").unwrap(), r#""plain""#);
        assert_eq!(to_string("").unwrap(), r#""""#);
        assert_eq!(to_string("<").unwrap(), r#""\u003c""#);
    }
}
