//! hyper answers a request it cannot parse (400), whose headers overflow its buffer (431) or
//! whose target is too long (414) by itself, with an empty body, before any service sees it,
//! and offers no hook to change that answer. This wrapper around the connection's byte stream
//! recognises exactly that answer as hyper writes it and puts the VEDauth JSON error (with
//! HSTS on HTTPS) on the wire in its place. Everything else passes through untouched; the
//! check costs a write a length and prefix comparison.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's error answer, up to its date: `HTTP/1.1 400 Bad Request` and then these lines.
const HYPER_HEADERS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\ndate: ";
/// An IMF-fixdate, as hyper writes it: `Tue, 01 Dec 2026 15:15:11 GMT`.
const DATE_LEN: usize = 29;
/// Longer writes are never hyper's error answer (the longest is about 110 bytes).
const MAX_CANDIDATE: usize = 160;

/// A connection's byte stream with hyper's bodiless error answers replaced.
#[derive(Debug)]
pub(super) struct ErrorRewrite<I> {
    io: I,
    hsts: Option<HeaderValue>,
    swap: Option<Swap>,
}

/// A replacement being written: its bytes, how many are out, and how many of hyper's bytes it
/// stands for (reported to hyper once all of it is out).
#[derive(Debug)]
struct Swap {
    bytes: Vec<u8>,
    done: usize,
    stands_for: usize,
}

impl<I> ErrorRewrite<I> {
    pub(super) fn new(io: I, hsts: Option<HeaderValue>) -> Self {
        Self {
            io,
            hsts,
            swap: None,
        }
    }
}

/// The status, reason and description of a write that is hyper's own error answer.
fn hyper_error(buf: &[u8]) -> Option<(u16, &'static str, &'static str, &[u8])> {
    if buf.len() > MAX_CANDIDATE || !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let (status, reason, description): (u16, &str, &str) = match buf.get(9..12)? {
        b"400" => (
            400,
            "Bad Request",
            "The request could not be parsed as HTTP",
        ),
        b"414" => (414, "URI Too Long", "The request target is too long"),
        b"431" => (
            431,
            "Request Header Fields Too Large",
            "The request header fields are too large or too many",
        ),
        _ => return None,
    };
    let rest = buf[12..]
        .strip_prefix(b" ")?
        .strip_prefix(reason.as_bytes())?
        .strip_prefix(HYPER_HEADERS)?
        .strip_suffix(b"\r\n\r\n")?;
    let date_ok = rest.len() == DATE_LEN && rest.iter().all(|b| (b' '..=b'~').contains(b));
    date_ok.then_some((status, reason, description, rest))
}

/// The VEDauth JSON error in place of hyper's answer in `buf`, if it is one.
fn replacement(buf: &[u8], hsts: Option<&HeaderValue>) -> Option<Vec<u8>> {
    let (status, reason, description, date) = hyper_error(buf)?;
    let body = serde_json::json!({"error": "invalid_request", "error_description": description})
        .to_string();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    out.extend_from_slice(b"content-type: application/json; charset=utf-8\r\n");
    if let Some(v) = hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n");
    out.extend_from_slice(format!("content-length: {}\r\ndate: ", body.len()).as_bytes());
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<I: AsyncWrite + Unpin> ErrorRewrite<I> {
    /// Writes the rest of a replacement in progress.
    fn poll_swap_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(s) = &mut self.swap {
            while s.done < s.bytes.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &s.bytes[s.done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                s.done += n;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Starts a replacement when `buf` is hyper's error answer, then writes it out; `None`
    /// when `buf` is ordinary bytes.
    fn poll_swap(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if self.swap.is_none() {
            let bytes = replacement(buf, self.hsts.as_ref())?;
            self.swap = Some(Swap {
                bytes,
                done: 0,
                stands_for: buf.len(),
            });
        }
        Some(match self.poll_swap_out(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = self.swap.take().map_or(0, |s| s.stands_for);
                Poll::Ready(Ok(n))
            }
        })
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ErrorRewrite<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ErrorRewrite<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_swap(cx, buf) {
            Some(p) => p,
            None => Pin::new(&mut this.io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper's error answer is a head without a body: one slice.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(p) = this.poll_swap(cx, first) {
                return p;
            }
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_swap_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_swap_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 15:15:11 GMT\r\n\r\n";

    #[test]
    fn hypers_answers_are_recognised_and_nothing_else() {
        assert!(replacement(HYPER_400, None).is_some());
        let h431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 15:15:11 GMT\r\n\r\n";
        assert!(replacement(h431, None).is_some());
        // Our own answers carry a content type and a body: never touched.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\ndate: Tue, 01 Dec 2026 15:15:11 GMT\r\n\r\n{}";
        assert!(replacement(ours, None).is_none());
        let other = b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 15:15:11 GMT\r\n\r\n";
        assert!(replacement(other, None).is_none());
        assert!(replacement(&HYPER_400[..HYPER_400.len() - 1], None).is_none());
    }

    #[test]
    fn the_replacement_is_the_json_error_with_hsts() {
        let hsts = HeaderValue::from_static("max-age=5");
        let out = replacement(HYPER_400, Some(&hsts)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json; charset=utf-8\r\n"));
        assert!(head.contains("\r\nstrict-transport-security: max-age=5\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(head.ends_with("date: Tue, 01 Dec 2026 15:15:11 GMT"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "invalid_request");
    }
}
