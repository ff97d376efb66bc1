//! HTTP/1.x requests with a minor version above 1, read as HTTP/1.1.
//!
//! RFC 9112 §2.3: a recipient of a message with a higher minor version than it implements
//! "SHOULD process the message as if it were in the highest minor version within that major
//! version to which the recipient is conformant". hyper's parser refuses anything but
//! `HTTP/1.0` and `HTTP/1.1` with 400, so the guest listener rewrites the version of each request
//! line as the bytes arrive: ` HTTP/1.N` with N from 2 to 9, at the end of a request line, becomes
//! ` HTTP/1.1`. Two-digit minor versions and other majors are left for hyper to refuse.
//!
//! The scan follows request heads: a request line, header lines, the empty line that ends the
//! head. What comes after a head is scanned as the next request line; a request body (which
//! guests do not send, and the guest API ignores) whose first line ends like a request line's
//! version would be rewritten too, which changes nothing IMDS answers.

use std::sync::LazyLock;

use memchr::memmem;

/// The bytes that come before the minor version digit in a request line.
const VERSION_PREFIX: &[u8] = b" HTTP/1.";

/// Finds `VERSION_PREFIX` (built once: a finder's set-up costs more than searching a head).
static VERSION_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(VERSION_PREFIX));

/// Where the scan is in the stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line: empty lines before it are skipped (RFC 9112 §2.2).
    BeforeRequestLine,
    /// In a request line, `matched` bytes of `VERSION_PREFIX` just seen.
    RequestLine { matched: usize },
    /// In the header lines; `empty_line` while the current line has nothing but `\r`.
    Headers { empty_line: bool },
}

/// A scanner that rewrites request lines' minor versions in place, chunk by chunk.
#[derive(Debug, Clone, Copy)]
pub struct MinorVersion {
    state: State,
}

impl Default for MinorVersion {
    fn default() -> Self {
        MinorVersion {
            state: State::BeforeRequestLine,
        }
    }
}

impl MinorVersion {
    /// Rewrites the minor versions in `chunk`, the next bytes read from the connection.
    ///
    /// The digit is rewritten as soon as it is seen, without waiting for the end of the line:
    /// if more digits follow (`HTTP/1.25`), the version is as invalid after the rewrite as
    /// before, and hyper refuses it either way.
    ///
    /// Every request passes through here, so the bytes that cannot change the state are
    /// skipped with `memchr`: in header lines all but the line feeds (only where the head ends
    /// matters), and in a request line all but spaces and line feeds while no part of the
    /// version's prefix is matched.
    pub fn rewrite(&mut self, chunk: &mut [u8]) {
        // The usual read: whole request heads, nothing to rewrite. A chunk that ends with an
        // empty line leaves the scan between requests whatever came before it, so when the scan
        // starts there too and no version prefix is followed by a digit to rewrite, the chunk
        // is done without following its lines.
        if self.state == State::BeforeRequestLine
            && ends_with_empty_line(chunk)
            && !has_rewritable_version(chunk)
        {
            return;
        }
        let mut at = 0;
        while at < chunk.len() {
            let rest = &chunk[at..];
            match self.state {
                State::Headers { empty_line } => match memchr::memchr(b'\n', rest) {
                    Some(line_feed) => {
                        self.state = if empty_line && only_carriage_returns(&rest[..line_feed]) {
                            State::BeforeRequestLine
                        } else {
                            State::Headers { empty_line: true }
                        };
                        at += line_feed + 1;
                    }
                    None => {
                        self.state = State::Headers {
                            empty_line: empty_line && only_carriage_returns(rest),
                        };
                        return;
                    }
                },
                State::RequestLine { matched: 0 } => match memchr::memchr2(b' ', b'\n', rest) {
                    Some(next) => {
                        at += next;
                        self.step(&mut chunk[at]);
                        at += 1;
                    }
                    None => return,
                },
                _ => {
                    self.step(&mut chunk[at]);
                    at += 1;
                }
            }
        }
    }

    /// The scan of one byte (the whole scan, byte by byte, is `rewrite` without its skips).
    fn step(&mut self, byte: &mut u8) {
        self.state = match self.state {
            State::BeforeRequestLine if *byte == b'\r' || *byte == b'\n' => {
                State::BeforeRequestLine
            }
            State::BeforeRequestLine => match_prefix(0, *byte),
            State::RequestLine { matched } if matched == VERSION_PREFIX.len() => {
                if (b'2'..=b'9').contains(byte) {
                    *byte = b'1';
                }
                end_of_line_or(*byte, match_prefix(0, *byte))
            }
            State::RequestLine { matched } => end_of_line_or(*byte, match_prefix(matched, *byte)),
            State::Headers { empty_line } => match *byte {
                b'\n' if empty_line => State::BeforeRequestLine,
                b'\n' => State::Headers { empty_line: true },
                b'\r' => State::Headers { empty_line },
                _ => State::Headers { empty_line: false },
            },
        };
    }
}

/// Whether `chunk` ends with an empty line (`\n\n` or `\n\r\n`): after it the scan is before a
/// request line, from any state (a line feed ends a request line or a header line, and the
/// empty line after it ends the head).
fn ends_with_empty_line(chunk: &[u8]) -> bool {
    chunk.ends_with(b"\n\n") || chunk.ends_with(b"\n\r\n")
}

/// Whether `VERSION_PREFIX` occurs in `chunk` followed by a digit the scan would rewrite.
fn has_rewritable_version(chunk: &[u8]) -> bool {
    VERSION_FINDER.find_iter(chunk).any(|at| {
        chunk
            .get(at + VERSION_PREFIX.len())
            .is_some_and(|digit| (b'2'..=b'9').contains(digit))
    })
}

/// Whether `bytes` (the rest of a line before its line feed) hold nothing but `\r`.
fn only_carriage_returns(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == b'\r')
}

/// The state after `byte` in a request line: the header lines at `\n`, else `otherwise`.
fn end_of_line_or(byte: u8, otherwise: State) -> State {
    if byte == b'\n' {
        State::Headers { empty_line: true }
    } else {
        otherwise
    }
}

/// The request-line state after `byte` with `matched` bytes of `VERSION_PREFIX` seen before it.
fn match_prefix(matched: usize, byte: u8) -> State {
    if byte == VERSION_PREFIX[matched] {
        State::RequestLine {
            matched: matched + 1,
        }
    } else if byte == VERSION_PREFIX[0] {
        State::RequestLine { matched: 1 }
    } else {
        State::RequestLine { matched: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `size` bytes and returns what comes out.
    fn rewrite(input: &[u8], size: usize) -> Vec<u8> {
        let mut scanner = MinorVersion::default();
        let mut output = input.to_vec();
        for chunk in output.chunks_mut(size) {
            scanner.rewrite(chunk);
        }
        output
    }

    #[track_caller]
    fn check(input: &str, expect: &str) {
        for size in [1, 2, 3, 7, input.len()] {
            let output = rewrite(input.as_bytes(), size);
            assert_eq!(
                String::from_utf8(output).unwrap(),
                expect,
                "chunks of {size}: {input:?}"
            );
        }
    }

    #[test]
    fn higher_minor_versions_become_one() {
        check(
            "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        check("GET / HTTP/1.9\nHost: x\n\n", "GET / HTTP/1.1\nHost: x\n\n");
        check(
            "\r\nGET /a HTTP/1.5\r\nHost: x\r\n\r\nGET /b HTTP/1.7\r\nHost: x\r\n\r\n",
            "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        );
    }

    #[test]
    fn everything_else_is_left_alone() {
        for unchanged in [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1x\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /HTTP/1.5 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX-Version: a HTTP/1.5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nReferer: HTTP/1.2\r\n\r\n",
        ] {
            check(unchanged, unchanged);
        }
    }

    #[test]
    fn two_digit_minor_versions_stay_invalid() {
        // `HTTP/1.25` becomes `HTTP/1.15`: refused by hyper either way.
        check("GET / HTTP/1.25\r\n\r\n", "GET / HTTP/1.15\r\n\r\n");
    }

    /// Pieces of request heads, near misses of the version among them.
    const PIECES: &[&str] = &[
        "GET",
        "PUT",
        " ",
        "/a",
        "/HTTP/1.2",
        " HTTP/1.",
        " HTTP/1",
        "HTTP/1.",
        "1",
        "2",
        "5",
        "9",
        "25",
        "x",
        "\r",
        "\n",
        "\r\n",
        "Host: y",
        "X: HTTP/1.3",
    ];

    proptest::proptest! {
        /// The skipping scan rewrites exactly what one `step` per byte rewrites, however the
        /// bytes are split into reads.
        #[test]
        fn skipping_changes_nothing(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..40),
            // Up to whole inputs in one read, the usual case (and the shortcut's).
            size in 1usize..200,
        ) {
            let input = pieces.concat().into_bytes();
            let mut reference = MinorVersion::default();
            let mut expect = input.clone();
            for byte in expect.iter_mut() {
                reference.step(byte);
            }
            proptest::prop_assert_eq!(rewrite(&input, size), expect);
        }
    }

    /// Feeds each of `reads` in turn, as the connection's reads bring them.
    fn rewrite_reads(reads: &[&str]) -> String {
        let mut scanner = MinorVersion::default();
        let mut output = String::new();
        for read in reads {
            let mut bytes = read.as_bytes().to_vec();
            scanner.rewrite(&mut bytes);
            output.push_str(&String::from_utf8(bytes).unwrap());
        }
        output
    }

    #[test]
    fn reads_that_end_inside_a_head_leave_the_scan_there() {
        // A read ending with the request line's or a header's line feed (not an empty line):
        // the next read continues the head, whose header lines are never rewritten.
        for reads in [
            ["GET / HTTP/1.1\r\n", "X: HTTP/1.3\r\n\r\n"],
            ["GET / HTTP/1.1\n", "X: HTTP/1.3\n\n"],
            ["GET / HTTP/1.1\r\nHost: x\r\n", "X: HTTP/1.3\r\n\r\n"],
        ] {
            assert_eq!(rewrite_reads(&reads), reads.concat());
        }
        // A read ending with the empty line ends the head: the next read is a request line.
        assert_eq!(
            rewrite_reads(&["GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.3\r\n\r\n"]),
            "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        );
        assert_eq!(
            rewrite_reads(&["GET / HTTP/1.1\n\n", "GET / HTTP/1.4\n\n"]),
            "GET / HTTP/1.1\n\nGET / HTTP/1.1\n\n"
        );
    }

    #[test]
    fn whole_reads_are_rewritten_whatever_the_request() {
        let input =
            b"PUT /latest/api/token HTTP/1.3\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n";
        let output = rewrite(input, input.len());
        assert!(output.starts_with(b"PUT /latest/api/token HTTP/1.1\r\n"));
        assert_eq!(output.len(), input.len());
    }
}
