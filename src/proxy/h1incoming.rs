//! The read side of a client's HTTP/1.1 connection, shared between the
//! server (`h1server`, which reads request heads from it and writes
//! responses to it) and the body of the request being served (`Incoming`,
//! which the pipeline polls, maybe from inside the upstream exchange).
//!
//! Both run in the connection's task, one at a time; the lock only makes
//! the sharing safe, it is never held across an await nor contended in
//! practice. A body outlives its request harmlessly: once the server moved
//! on (`seq` changed), it reads nothing more.
//!
//! `Expect: 100-continue` is answered the first time the body is polled,
//! as hyper did: a request refused before its body is wanted does not
//! invite the client to send it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use super::h1body::{Framing, Malformed, Step};
use super::h1parse::{poll_fill, MIN_READ};
use crate::plugins::BoxError;

/// Largest read size.
const MAX_READ: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the `100 Continue` of the current request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    /// Not asked for, or already sent.
    No,
    /// Asked for; this many of its bytes were written.
    Owed(usize),
}

/// The client connection and what was read from it and not yet used.
pub struct Wire<I> {
    pub io: I,
    pub buf: BytesMut,
    read_size: usize,
    /// The number of the request whose body `body` frames.
    pub seq: u64,
    /// What remains of the current request's body.
    pub body: Framing,
    pub expect: Continue,
}

pub type Shared<I> = Arc<Mutex<Wire<I>>>;

/// Locks the wire; a panic elsewhere does not make its bytes unusable.
pub fn lock<I>(wire: &Mutex<Wire<I>>) -> MutexGuard<'_, Wire<I>> {
    wire.lock().unwrap_or_else(|e| e.into_inner())
}

impl<I: AsyncRead + AsyncWrite + Unpin> Wire<I> {
    pub fn new(io: I) -> Wire<I> {
        Wire {
            io,
            buf: BytesMut::new(),
            read_size: MIN_READ,
            seq: 0,
            body: Framing::Done,
            expect: Continue::No,
        }
    }

    /// Reads more into `buf`; `Ok(0)` at the client's end of stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(
            &mut self.io,
            &mut self.buf,
            &mut self.read_size,
            MAX_READ,
            cx,
        )
    }

    /// Writes the owed `100 Continue`, if any.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Continue::Owed(done) = self.expect {
            if done == CONTINUE.len() {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                self.expect = Continue::No;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.expect = Continue::Owed(done + n);
        }
        Poll::Ready(Ok(()))
    }

    /// The next piece of the current body, reading as needed.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame<Bytes>>, BoxError>> {
        loop {
            match self.body.step(&mut self.buf)? {
                Step::Data(d) if d.is_empty() => {}
                Step::Data(d) => return Poll::Ready(Ok(Some(Frame::data(d)))),
                Step::Trailers(t) => return Poll::Ready(Ok(Some(Frame::trailers(t)))),
                Step::End => return Poll::Ready(Ok(None)),
                Step::More => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        self.body = Framing::Done;
                        return Poll::Ready(Err(Box::new(Malformed(
                            "client closed in the middle of the body",
                        ))));
                    }
                }
            }
        }
    }
}

/// The body of a request read from a client's HTTP/1.1 connection.
pub struct Incoming<I> {
    wire: Shared<I>,
    seq: u64,
    done: bool,
}

impl<I> Incoming<I> {
    /// The body of request `seq`, whose framing the wire holds.
    pub fn new(wire: Shared<I>, seq: u64) -> Incoming<I> {
        Incoming {
            wire,
            seq,
            done: false,
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> HttpBody for Incoming<I> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut wire = lock(&this.wire);
        if wire.seq != this.seq {
            this.done = true;
            return Poll::Ready(Some(Err("request body read after its response".into())));
        }
        if let Err(e) = ready!(wire.poll_continue(cx)) {
            this.done = true;
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        let polled = ready!(wire.poll_body(cx));
        this.done = !matches!(polled, Ok(Some(_))) || wire.body.is_done();
        Poll::Ready(polled.transpose())
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        match lock(&self.wire).body {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
