//! `multipart/form-data` bodies (RFC 7578), as browsers send a form with a file field: the
//! console's forms that take an upload (a static role's credentials file, a scenario file).
//! Read with axum's `Multipart` (the `multer` crate); only what such a form holds is kept: each
//! part's `name` and its content as UTF-8 text (a file's content is its field's value). A body
//! that is not of this shape is `None`.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Request};

/// True when `content_type` is `multipart/form-data` (its boundary is checked when read).
pub fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..19)
        .is_some_and(|kind| kind.eq_ignore_ascii_case("multipart/form-data"))
}

/// The fields of the form `request` carries; the first part of each name counts.
pub async fn fields<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Option<HashMap<String, String>> {
    let mut multipart = Multipart::from_request(request, state).await.ok()?;
    let mut fields = HashMap::new();
    while let Some(field) = multipart.next_field().await.ok()? {
        let name = field.name()?.to_owned();
        let content = field.text().await.ok()?;
        fields.entry(name).or_insert(content);
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=----WebKitFormBoundaryx1y2";

    async fn read(content_type: &str, body: &str) -> Option<HashMap<String, String>> {
        let request = Request::builder()
            .method("POST")
            .header("content-type", content_type)
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        fields(request, &()).await
    }

    #[tokio::test]
    async fn reads_text_fields_and_files() {
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
        let fields = read(TYPE, body).await.unwrap();
        assert_eq!(fields["csrf"], "abc");
        assert_eq!(fields["file"], "{\"AccessKeyId\": \"A\"}\n");
        assert_eq!(fields["empty"], "");
        assert_eq!(fields.len(), 3);
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_form() {
        assert!(read("application/x-www-form-urlencoded", "a=b")
            .await
            .is_none());
        assert!(read("multipart/form-data", "").await.is_none());
        // Cut short: no closing delimiter.
        let cut =
            "------WebKitFormBoundaryx1y2\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb";
        assert!(read(TYPE, cut).await.is_none());
        assert!(is_multipart(TYPE));
        assert!(!is_multipart("text/plain"));
        assert!(!is_multipart("multipart/mixed; boundary=x"));
    }
}
