//! Wire details (issue #14): header names and headers as EC2 sends them, `Last-Modified`, byte
//! ranges of user-data, half-closed connections and the `Host` rules of RFC 9112, on raw sockets,
//! in both token modes.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    time::Duration,
};

use crate::{
    guest_api::EXAMPLE,
    support::{read_response, server, Response, Server},
};

/// The example instance, with a container endpoint, in `http-tokens` mode `mode`.
fn example(mode: &str) -> Server {
    server()
        .config(&format!(
            "{EXAMPLE}\n[[container-credentials]]\npath = \"/v2/credentials/app\"\nrole = \"my-instance-role\"\n"
        ))
        .args(&["--http-tokens", mode, "--container-listen", "127.0.0.1:0"])
        .start()
}

/// The header line a request needs in `mode`: a fresh token where tokens are required.
fn token_line(server: &Server, mode: &str) -> String {
    if mode == "required" {
        format!("X-aws-ec2-metadata-token: {}\r\n", server.token(600))
    } else {
        String::new()
    }
}

/// Sends `request`, optionally shuts down the sending side, and reads until the server closes.
fn exchange(address: SocketAddr, request: &[u8], half_close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    if half_close {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// The head of a raw answer: the status line and the header lines, exactly as sent.
fn head_lines(answer: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(answer);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").map(str::to_owned).collect()
}

/// Asserts every header name of `lines` is spelled title-cased, as EC2 writes them.
#[track_caller]
fn assert_title_case(lines: &[String]) {
    for line in &lines[1..] {
        let name = line.split(':').next().unwrap();
        let title_cased = name.split('-').all(|part| {
            let mut characters = part.chars();
            characters
                .next()
                .is_some_and(|first| first.is_ascii_uppercase())
                && characters.all(|rest| !rest.is_ascii_uppercase())
        });
        assert!(
            title_cased,
            "{name:?} is not spelled as EC2 spells it: {lines:#?}"
        );
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

#[test]
fn headers_are_spelled_and_chosen_as_ec2_does() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let token_line = token_line(&server, mode);

        // The token answer: the TTL header spelled X-Aws-Ec2-Metadata-Token-Ttl-Seconds, and no
        // Accept-Ranges or Last-Modified (captures in s3fs-fuse/s3fs-fuse#2029 and #2098).
        let token = exchange(
            server.address(),
            b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
              X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n",
            false,
        );
        let lines = head_lines(&token);
        assert_eq!(lines[0], "HTTP/1.1 200 OK", "{mode}");
        assert_title_case(&lines);
        assert_eq!(
            header(&lines, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"),
            Some("21600")
        );
        assert_eq!(header(&lines, "Server"), Some("EC2ws"));
        assert_eq!(header(&lines, "Content-Type"), Some("text/plain"));
        assert_eq!(header(&lines, "Accept-Ranges"), None, "{lines:#?}");
        assert_eq!(header(&lines, "Last-Modified"), None, "{lines:#?}");

        // A metadata answer: Accept-Ranges: none and Last-Modified, here the launch time
        // (pending-time 2026-11-24T12:00:00Z), as in Netflix/titus-executor#633's capture.
        let value = exchange(
            server.address(),
            format!(
                "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\
                 {token_line}Connection: close\r\n\r\n"
            )
            .as_bytes(),
            false,
        );
        let lines = head_lines(&value);
        assert_eq!(lines[0], "HTTP/1.1 200 OK", "{mode}");
        assert_title_case(&lines);
        assert_eq!(header(&lines, "Content-Type"), Some("text/plain"));
        assert_eq!(header(&lines, "Accept-Ranges"), Some("none"));
        assert_eq!(
            header(&lines, "Last-Modified"),
            Some("Tue, 24 Nov 2026 12:00:00 GMT")
        );
        assert_eq!(header(&lines, "Server"), Some("EC2ws"));
        assert_eq!(header(&lines, "Content-Length"), Some("19"));
        assert!(header(&lines, "Date").is_some());
        assert_eq!(
            header(&lines, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds").is_some(),
            mode == "required"
        );

        // Errors carry neither Accept-Ranges nor Last-Modified (the captured 403 and 405).
        for request in [
            format!("GET /latest/meta-data/nothing HTTP/1.1\r\nHost: x\r\n{token_line}\r\n"),
            "GET /latest/api/token HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            "PUT /latest/api/token/ HTTP/1.1\r\nHost: x\r\n\
             X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n"
                .to_owned(),
        ] {
            let lines = head_lines(&exchange(server.address(), request.as_bytes(), false));
            assert!(lines[0].starts_with("HTTP/1.1 4"), "{lines:#?}");
            assert_title_case(&lines);
            assert_eq!(header(&lines, "Accept-Ranges"), None, "{lines:#?}");
            assert_eq!(header(&lines, "Last-Modified"), None, "{lines:#?}");
            assert_eq!(header(&lines, "Server"), Some("EC2ws"));
        }
    }
}

#[test]
fn credentials_are_dated_by_their_last_update() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let token = server.token(600);
        let credentials = server.get_with_token(
            "/latest/meta-data/iam/security-credentials/my-instance-role",
            &token,
        );
        let json: serde_json::Value = serde_json::from_slice(&credentials.body).unwrap();
        let updated = time::OffsetDateTime::parse(
            json["LastUpdated"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let expect = imds_core::render::http_date(updated);
        assert_eq!(
            credentials.header("last-modified"),
            Some(expect.as_str()),
            "{mode}"
        );
        // A listing is as recent as its newest entry.
        for listing in [
            "/latest/meta-data/iam/security-credentials/",
            "/latest/meta-data/iam/",
            "/latest/meta-data/",
        ] {
            assert_eq!(
                server
                    .get_with_token(listing, &token)
                    .header("last-modified"),
                Some(expect.as_str()),
                "{listing}"
            );
        }
        assert_eq!(
            server
                .get_with_token("/latest/meta-data/placement/region", &token)
                .header("last-modified"),
            Some("Tue, 24 Nov 2026 12:00:00 GMT")
        );
    }
}

#[test]
fn user_data_answers_byte_ranges() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let token_line = token_line(&server, mode);
        let ask = |range: &str| {
            let mut stream = TcpStream::connect(server.address()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write!(
                stream,
                "GET /latest/user-data HTTP/1.1\r\nHost: x\r\n{token_line}{range}Connection: close\r\n\r\n"
            )
            .unwrap();
            read_response(&mut stream).unwrap()
        };
        let whole: Response = ask("");
        assert_eq!(whole.status, 200, "{mode}");
        assert_eq!(whole.header("accept-ranges"), Some("bytes"));
        assert_eq!(
            whole.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(whole.text(), "#!/bin/sh\necho 'Hello from imds'\n");
        let part = ask("Range: bytes=2-8\r\n");
        assert_eq!(part.status, 206);
        assert_eq!(part.header("content-range"), Some("bytes 2-8/33"));
        assert_eq!(part.text(), "/bin/sh");
        let tail = ask("Range: bytes=-6\r\n");
        assert_eq!(tail.status, 206);
        assert_eq!(tail.text(), "imds'\n");
        let beyond = ask("Range: bytes=33-\r\n");
        assert_eq!(beyond.status, 416);
        assert_eq!(beyond.header("content-range"), Some("bytes */33"));
        // Several ranges are not served as multipart: the whole body is.
        let several = ask("Range: bytes=0-1,4-5\r\n");
        assert_eq!(several.status, 200);
        assert_eq!(several.body.len(), 33);
        // Other answers ignore Range.
        let mut stream = TcpStream::connect(server.address()).unwrap();
        write!(
            stream,
            "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n{token_line}Range: bytes=0-1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let value = read_response(&mut stream).unwrap();
        assert_eq!(value.status, 200);
        assert_eq!(value.text(), "i-0123456789abcdef0");
    }
}

/// Regression (issue 14): a client that sends its whole request and then shuts down its sending
/// side gets its whole answer, on every listener; before, a share of them got none.
#[test]
fn half_closed_requests_get_their_whole_answer() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let token_line = token_line(&server, mode);
        let get = format!(
            "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n{token_line}\r\n"
        );
        let put = "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
                   X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n";
        let container = "GET /v2/credentials/app HTTP/1.1\r\nHost: 169.254.170.2\r\n\r\n";
        let control = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let cases: [(&str, SocketAddr, &str, &str); 4] = [
            ("guest GET", server.address(), &get, "i-0123456789abcdef0"),
            ("guest PUT", server.address(), put, ""),
            (
                "container",
                server.container_address.unwrap(),
                container,
                "\"AccessKeyId\"",
            ),
            ("control API", server.admin_address, control, "ok"),
        ];
        for (name, address, request, expect) in cases {
            for attempt in 0..100 {
                let answer = exchange(address, request.as_bytes(), true);
                let text = String::from_utf8_lossy(&answer);
                assert!(
                    text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains(expect),
                    "{mode} {name}, attempt {attempt}: {text:?}"
                );
                // The whole body arrived: as long as Content-Length says.
                let lines = head_lines(&answer);
                let length: usize = header(&lines, "Content-Length").unwrap().parse().unwrap();
                let body = text.split_once("\r\n\r\n").unwrap().1;
                assert_eq!(body.len(), length, "{mode} {name}: {text:?}");
            }
        }
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request without exactly one valid Host, or any request with more
/// than one or an invalid one, gets 400 on every listener; HTTP/1.0 may leave Host out.
#[test]
fn requests_without_exactly_one_valid_host_get_400() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let token_line = token_line(&server, mode);
        let listeners = [
            ("guest", server.address(), "/latest/meta-data/instance-id"),
            (
                "container",
                server.container_address.unwrap(),
                "/v2/credentials/app",
            ),
            ("control API", server.admin_address, "/healthz"),
        ];
        for (name, address, path) in listeners {
            let ask = |version: &str, hosts: &str| {
                let answer = exchange(
                    address,
                    format!(
                        "GET {path} HTTP/{version}\r\n{hosts}{token_line}Connection: close\r\n\r\n"
                    )
                    .as_bytes(),
                    false,
                );
                head_lines(&answer)[0].clone()
            };
            for hosts in [
                "",
                "Host: a\r\nHost: a\r\n",
                "Host: a\r\nHost: b\r\n",
                "Host: user@169.254.169.254\r\n",
                "Host: 169.254.169.254:http\r\n",
                "Host: fd00:ec2::254\r\n",
            ] {
                assert_eq!(
                    ask("1.1", hosts),
                    "HTTP/1.1 400 Bad Request",
                    "{mode} {name} {hosts:?}"
                );
            }
            for hosts in [
                "Host: 169.254.169.254\r\n",
                "Host: [fd00:ec2::254]:80\r\n",
                "Host:\r\n",
            ] {
                assert_eq!(
                    ask("1.1", hosts),
                    "HTTP/1.1 200 OK",
                    "{mode} {name} {hosts:?}"
                );
            }
            assert_eq!(ask("1.0", ""), "HTTP/1.0 200 OK", "{mode} {name}");
            assert_eq!(
                ask("1.0", "Host: a\r\nHost: b\r\n"),
                "HTTP/1.0 400 Bad Request",
                "{mode} {name}"
            );
        }
    }
}

/// The token resource and the spellings near it: only `/latest/api/token` (give or take leading
/// and doubled slashes, percent-encoding and a query) issues tokens; a PUT anywhere else gets
/// EC2's 403 with an empty body (aws-beam/aws_credentials#47 for the trailing slash), and `Allow`
/// lists only methods the resource answers.
#[test]
fn token_path_and_its_near_misses() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "60")];
        for issuing in [
            "/latest/api/token",
            "//latest/api/token",
            "/latest//api/token",
            "/latest/api/%74oken",
            "/latest/api/token?x=1",
        ] {
            let response = server.request("PUT", issuing, &ttl);
            assert_eq!(response.status, 200, "{mode} {issuing}");
            assert!(!response.body.is_empty());
        }
        for refused in [
            "/latest/api/token/",
            "/latest/api/token//",
            "/latest/api/tokens",
            "/latest/api",
            "/latest/api/token/x",
            "/2021-03-23/api/token",
            "/api/token",
            "/latest/meta-data/",
        ] {
            let response = server.request("PUT", refused, &ttl);
            assert_eq!(response.status, 403, "{mode} {refused}");
            assert!(response.body.is_empty(), "{mode} {refused}");
            assert_eq!(response.header("content-type"), Some("text/plain"));
        }
        // OPTIONS answers with the methods of the resource; the others are 405 naming them.
        let options = server.request("OPTIONS", "/latest/api/token", &[]);
        assert_eq!(options.status, 200, "{mode}");
        assert_eq!(options.header("allow"), Some("OPTIONS, PUT"));
        assert!(options.body.is_empty());
        for method in ["GET", "HEAD", "POST", "DELETE"] {
            let response = if method == "HEAD" {
                crate::support::head(server.address(), "/latest/api/token")
            } else {
                server.request(method, "/latest/api/token", &ttl)
            };
            assert_eq!(response.status, 405, "{mode} {method}");
            let allow = response.header("allow").unwrap().to_owned();
            assert_eq!(allow, "OPTIONS, PUT");
            // Every method Allow names is one the resource does not refuse with 405.
            for allowed in allow.split(", ") {
                assert_ne!(
                    server.request(allowed, "/latest/api/token", &ttl).status,
                    405,
                    "{allowed}"
                );
            }
        }
        // With a trailing slash it is a path like any other: GET finds nothing there.
        let token = server.token(60);
        assert_eq!(
            server.get_with_token("/latest/api/token/", &token).status,
            404,
            "{mode}"
        );
        // And on data paths, what Allow names answers.
        let refused = server.request("POST", "/latest/meta-data/instance-id", &[]);
        assert_eq!(refused.header("allow"), Some("GET, HEAD"));
        assert_ne!(
            crate::support::head(server.address(), "/latest/meta-data/instance-id").status,
            405
        );
    }
}

/// Dot segments are resolved as RFC 3986 removes them, within the version's tree: Perl's VM::EC2
/// reads user-data as `meta-data/../user-data`, and nothing climbs above a version.
#[test]
fn dot_segments_resolve_within_the_version() {
    for mode in ["optional", "required"] {
        let server = example(mode);
        let token = server.token(600);
        let get = |path: &str| server.get_with_token(path, &token);
        let user_data = get("/latest/meta-data/../user-data");
        assert_eq!(user_data.status, 200, "{mode}");
        assert_eq!(user_data.text(), "#!/bin/sh\necho 'Hello from imds'\n");
        assert_eq!(
            get("/latest/meta-data/./instance-id").text(),
            "i-0123456789abcdef0"
        );
        assert_eq!(
            get("/2021-03-23/meta-data/placement/../instance-id").text(),
            "i-0123456789abcdef0"
        );
        assert_eq!(
            get("/latest/meta-data/%2e%2e/meta-data/instance-id").text(),
            "i-0123456789abcdef0"
        );
        assert_eq!(get("/latest/..").text(), "dynamic\nmeta-data\nuser-data");
        for outside in [
            "/latest/../../../etc/passwd",
            "/latest/meta-data/../../../../proc/self/environ",
        ] {
            let response = get(outside);
            assert_eq!(response.status, 404, "{mode} {outside}");
            assert_eq!(response.text(), crate::support::NOT_FOUND_PAGE);
        }
        let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "60")];
        assert_eq!(
            server
                .request("PUT", "/latest/meta-data/../api/token", &ttl)
                .status,
            200
        );
        // `token/.` resolves to `token/`: the trailing-slash spelling, refused.
        assert_eq!(
            server.request("PUT", "/latest/api/token/.", &ttl).status,
            403
        );
    }
}
