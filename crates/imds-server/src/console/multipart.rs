//! `multipart/form-data` bodies (RFC 7578), as browsers send a form with a file field: the
//! console's forms that take an upload (a static role's credentials file, a scenario file).
//! Only what such a form holds is read: each part's `name` and its content as UTF-8 text (a
//! file's content is its field's value). A body that is not of this shape is `None`.

use std::collections::HashMap;

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let mut parameters = content_type.split(';');
    let kind = parameters.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parameters
        .filter_map(|parameter| parameter.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"'))
        // RFC 2046 §5.1.1: 1 to 70 characters.
        .filter(|value| !value.is_empty() && value.len() <= 70)
}

/// True when `content_type` is `multipart/form-data` with a boundary.
pub fn is_multipart(content_type: &str) -> bool {
    boundary(content_type).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn part_name(headers: &str) -> Option<String> {
    for line in headers.split("\r\n") {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if !field.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut parameters = value.split(';');
        if !parameters.next()?.trim().eq_ignore_ascii_case("form-data") {
            return None;
        }
        return parameters
            .filter_map(|parameter| parameter.trim().split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("name"))
            .map(|(_, value)| value.trim().trim_matches('"').to_owned());
    }
    None
}

/// The fields of `body`, sent as `content_type`; the first part of each name counts.
pub fn fields(content_type: &str, body: &[u8]) -> Option<HashMap<String, String>> {
    let boundary = boundary(content_type)?;
    let delimiter = format!("--{boundary}");
    let next_part = format!("\r\n--{boundary}");
    let start = find(body, delimiter.as_bytes())?;
    let mut rest = &body[start + delimiter.len()..];
    let mut fields = HashMap::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(fields);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, next_part.as_bytes())?;
        let part = &rest[..end];
        rest = &rest[end + next_part.len()..];
        let split = find(part, b"\r\n\r\n");
        let (headers, content) = match split {
            Some(at) => (&part[..at], &part[at + 4..]),
            // A part with headers and no content.
            None => (part, &b""[..]),
        };
        let name = part_name(std::str::from_utf8(headers).ok()?)?;
        let content = String::from_utf8(content.to_vec()).ok()?;
        fields.entry(name).or_insert(content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=----WebKitFormBoundaryx1y2";

    #[test]
    fn reads_text_fields_and_files() {
        let body = "------WebKitFormBoundaryx1y2\r\n\
            Content-Disposition: form-data; name=\"csrf\"\r\n\r\n\
            abc\r\n\
            ------WebKitFormBoundaryx1y2\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"keys.json\"\r\n\
            Content-Type: application/json\r\n\r\n\
            {\"AccessKeyId\": \"A\"}\n\r\n\
            ------WebKitFormBoundaryx1y2\r\n\
            Content-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n\
            Content-Type: application/octet-stream\r\n\r\n\
            \r\n\
            ------WebKitFormBoundaryx1y2--\r\n";
        let fields = fields(TYPE, body.as_bytes()).unwrap();
        assert_eq!(fields["csrf"], "abc");
        assert_eq!(fields["file"], "{\"AccessKeyId\": \"A\"}\n");
        assert_eq!(fields["empty"], "");
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn refuses_what_is_not_a_form() {
        assert!(fields("application/x-www-form-urlencoded", b"a=b").is_none());
        assert!(fields("multipart/form-data", b"").is_none());
        // Cut short: no closing delimiter.
        let cut =
            "------WebKitFormBoundaryx1y2\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb";
        assert!(fields(TYPE, cut.as_bytes()).is_none());
        // A part that is not form-data.
        let other = "------WebKitFormBoundaryx1y2\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nb\r\n------WebKitFormBoundaryx1y2--";
        assert!(fields(TYPE, other.as_bytes()).is_none());
        assert!(is_multipart(TYPE));
        assert!(!is_multipart("text/plain"));
    }
}
