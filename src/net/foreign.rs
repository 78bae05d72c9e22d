//! Recognising a peer that speaks another protocol (HTTP, TLS, SSH) from the first bytes of a
//! connection, so both sides can say so plainly instead of reporting an absurd frame length.
//! Consulted only once framing has already failed: the message path never runs it.

/// Another protocol recognised from a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Foreign {
    /// An HTTP request line (`GET / HTTP/1.1`) or response (`HTTP/1.1 200 OK`).
    Http,
    /// A TLS record (a ClientHello, or an alert).
    Tls,
    /// An SSH identification string.
    Ssh,
}

const HTTP_METHODS: [&[u8]; 10] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI * ",
];

impl Foreign {
    /// The protocol `first` (a connection's first bytes) belongs to, if recognised.
    pub(crate) fn detect(first: &[u8]) -> Option<Foreign> {
        let starts = |prefix: &[u8]| first.len() >= prefix.len() && first.starts_with(prefix);
        if starts(b"HTTP/") || HTTP_METHODS.iter().any(|m| starts(m)) {
            Some(Foreign::Http)
        } else if first.len() >= 3 && matches!(first[0], 0x15 | 0x16) && first[1] == 0x03 {
            Some(Foreign::Tls)
        } else if starts(b"SSH-") {
            Some(Foreign::Ssh)
        } else {
            None
        }
    }

    /// The protocol's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Foreign::Http => "HTTP",
            Foreign::Tls => "TLS",
            Foreign::Ssh => "SSH",
        }
    }

    /// What the server sends such a client before closing: an HTTP 400 with a plain-text
    /// body for HTTP, the plain text alone otherwise.
    pub(crate) fn reply(self) -> &'static [u8] {
        match self {
            Foreign::Http => HTTP_REPLY.as_bytes(),
            Foreign::Tls | Foreign::Ssh => PLAIN_REPLY.as_bytes(),
        }
    }

    /// The client's view: a server at the other end that answered in this protocol.
    pub(crate) fn server_text(self) -> String {
        format!(
            "the server answered in {}, not keel's protocol (wrong address or port?)",
            self.name()
        )
    }
}

/// The plain-text notice (also the body of the HTTP reply).
const PLAIN_REPLY: &str = "This is a keel server. It speaks keel's binary protocol \
(docs/PROTOCOL.md), not HTTP or TLS: use `keel client` or keel::net::Client.\n";

const HTTP_REPLY: &str = concat!(
    "HTTP/1.1 400 Bad Request\r\n",
    "Content-Type: text/plain; charset=utf-8\r\n",
    "Connection: close\r\n",
    "Content-Length: 133\r\n",
    "\r\n",
    "This is a keel server. It speaks keel's binary protocol (docs/PROTOCOL.md), not HTTP or ",
    "TLS: use `keel client` or keel::net::Client.\n"
);

const _: () = assert!(PLAIN_REPLY.len() == 133, "Content-Length of HTTP_REPLY");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_http_tls_and_ssh_and_nothing_else() {
        assert_eq!(Foreign::detect(b"GET / HTTP/1.1\r\n"), Some(Foreign::Http));
        assert_eq!(Foreign::detect(b"POST /x HTTP/1.1"), Some(Foreign::Http));
        assert_eq!(Foreign::detect(b"HTTP/1.1 200 OK"), Some(Foreign::Http));
        assert_eq!(
            Foreign::detect(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Some(Foreign::Tls)
        );
        assert_eq!(Foreign::detect(b"SSH-2.0-OpenSSH_9.6"), Some(Foreign::Ssh));
        assert_eq!(Foreign::detect(b"GE"), None);
        assert_eq!(Foreign::detect(&[0x0e, 0, 0, 0, 1]), None);
    }

    #[test]
    fn the_http_reply_is_well_formed() {
        let text = std::str::from_utf8(Foreign::Http.reply()).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, PLAIN_REPLY);
    }
}
