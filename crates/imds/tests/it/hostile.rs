//! Hostile and broken input: each gets a 4xx (or the status AWS gives) and the server keeps
//! answering others.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::support::{read_response, send_raw, server, Server};

fn still_answers(server: &Server) {
    assert_eq!(server.get("/latest/meta-data/instance-id").status, 200);
}

#[track_caller]
fn check_status(server: &Server, raw: &[u8], allowed: &[u16]) {
    let response = send_raw(server.address(), raw);
    assert!(
        allowed.contains(&response.status),
        "status {} for {:?}",
        response.status,
        String::from_utf8_lossy(&raw[..raw.len().min(80)])
    );
    still_answers(server);
}

#[test]
fn oversized_request_line_and_headers() {
    let server = server().start();
    let long_path = format!(
        "GET /latest/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    check_status(&server, long_path.as_bytes(), &[400, 414, 431]);
    let long_header = format!(
        "GET /latest/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100_000)
    );
    check_status(&server, long_header.as_bytes(), &[400, 431]);
    let many_headers: String = (0..500).map(|index| format!("X-H{index}: v\r\n")).collect();
    let many = format!("GET /latest/ HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    check_status(&server, many.as_bytes(), &[400, 431]);
    let long_token = format!(
        "GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token: {}\r\nConnection: close\r\n\r\n",
        "A".repeat(4000)
    );
    check_status(&server, long_token.as_bytes(), &[401]);
}

#[test]
fn malformed_paths_and_bytes() {
    let server = server().start();
    for raw in [
        &b"GET /latest/meta-data/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"GET /latest/meta-data/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /latest/meta-data/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /latest/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /latest/meta-data/../../../../dynamic/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        check_status(&server, raw, &[404]);
    }
    for raw in [
        &b"GET /latest/meta\0data HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /latest/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET latest HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /latest/ HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /latest/ HTTP/1.1\r\nX-aws-ec2-metadata-token: a\0b\r\n\r\n",
    ] {
        check_status(&server, raw, &[400, 404, 505]);
    }
}

#[test]
fn absurd_ttls_and_bodies() {
    let server = server().start();
    for (ttl, expect) in [
        ("18446744073709551616", 400),
        ("1e3", 400),
        ("21600 ", 200),
        ("\t60", 200),
    ] {
        let raw = format!(
            "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\nConnection: close\r\n\r\n"
        );
        let response = send_raw(server.address(), raw.as_bytes());
        // Leading and trailing whitespace is not part of a header value (RFC 9110 §5.5), so
        // "21600 " and "\t60" are valid TTLs; the others are not.
        assert_eq!(response.status, expect, "{ttl:?}");
    }
    // A body on a GET is read and ignored; the connection stays usable.
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    stream
        .write_all(b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    // A large token PUT body does not stop the token.
    let big = format!(
        "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n{}",
        "z".repeat(100_000)
    );
    assert_eq!(send_raw(server.address(), big.as_bytes()).status, 200);
    still_answers(&server);
}

#[test]
fn slow_clients_are_cut_off() {
    let server = server().args(&["--header-read-timeout", "1"]).start();
    let mut slow = TcpStream::connect(server.address()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    still_answers(&server);
    let mut bytes = Vec::new();
    let _ = slow.read_to_end(&mut bytes);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "slow client kept for {:?}",
        started.elapsed()
    );
    // Whatever hyper sends (408 or nothing), there is no 200.
    assert!(!String::from_utf8_lossy(&bytes).contains("200 OK"));

    // An idle keep-alive connection is closed as well.
    let mut idle = TcpStream::connect(server.address()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "idle connection kept for {:?}",
        started.elapsed()
    );
}

#[test]
fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_timeout() {
    let server = server().args(&["--header-read-timeout", "1"]).start();
    let mut trickle = TcpStream::connect(server.address()).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let head = b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut closed = false;
    for byte in head {
        if trickle.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let mut read = [0u8; 64];
        match trickle.read(&mut read) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("answered a head that took longer than its timeout"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    // Each byte resets nothing: the connection is cut about a second after it opened, well
    // before the whole head (about 20 s at this pace) is sent.
    assert!(closed, "a trickled head was read to its end");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut after {:?}",
        started.elapsed()
    );
    still_answers(&server);
}

#[test]
fn thousands_of_idle_connections_are_bounded() {
    let server = server()
        .args(&["--max-connections", "200", "--header-read-timeout", "2"])
        .start();
    let mut idle: Vec<TcpStream> = (0..2000)
        .filter_map(|_| TcpStream::connect(server.address()).ok())
        .collect();
    assert!(idle.len() >= 1000, "only {} connections opened", idle.len());
    // Over the bound, connections are closed at once instead of piling up.
    let mut closed = 0;
    for stream in idle.iter_mut().skip(500).take(100) {
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        closed > 90,
        "only {closed} of 100 connections over the bound were closed"
    );
    // Once the idle ones time out, others are served again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut stream = TcpStream::connect(server.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let _ = stream.write_all(
            b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if let Some(response) = read_response(&mut stream) {
            assert_eq!(response.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "server never answered again");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
}

/// Regression (issue 3, conformance): error answers close the connection, so clients that do
/// not read an error's body are not held until the idle timeout; successful answers keep it.
#[test]
fn error_answers_close_the_connection_and_successes_keep_it() {
    let server = server()
        .args(&["--http-tokens", "required", "--header-read-timeout", "60"])
        .start();
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(response.header("connection"), Some("close"));
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "closed only after {:?}",
        started.elapsed()
    );

    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n")
        .unwrap();
    let token = read_response(&mut stream).unwrap();
    assert_eq!(token.status, 200);
    assert_eq!(token.header("connection"), None);
    let request = format!(
        "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token: {}\r\n\r\n",
        token.text()
    );
    stream.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
}
