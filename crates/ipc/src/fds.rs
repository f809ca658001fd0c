//! Descriptors passed over the Unix stream sockets between daemons
//! (SCM_RIGHTS): qmgr hands a delivery agent read-only descriptors of the
//! queue's body segments instead of copying a big body through the socket
//! ([`crate::delivery::DeliveryMessage::Segments`]).
//!
//! The kernel attaches passed descriptors to the bytes of the `sendmsg`
//! that carried them, and a plain `read` of those bytes closes them. So a
//! connection that may receive descriptors reads with `recvmsg`
//! ([`FdStream`]), keeps what arrives in order, and the frame that
//! announces them takes them ([`TakeFds::take_fd`]): they always arrive
//! with or before the bytes of that frame.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

use crate::frame::append_frame;
use crate::{Connection, IpcError};

/// Most descriptors one `sendmsg` carries (the kernel allows 253).
pub const MAX_FDS: usize = 16;

/// Descriptors received and not yet claimed are closed beyond this many: a
/// peer that sends them unannounced cannot exhaust ours.
const MAX_WAITING: usize = 64;

/// A stream whose received descriptors can be claimed in arrival order.
pub trait TakeFds {
    /// The oldest received descriptor not yet taken.
    fn take_fd(&mut self) -> Option<OwnedFd>;
}

/// A Unix stream that reads with `recvmsg`, keeping passed descriptors.
#[derive(Debug)]
pub struct FdStream {
    inner: UnixStream,
    fds: VecDeque<OwnedFd>,
}

impl FdStream {
    pub fn new(inner: UnixStream) -> FdStream {
        FdStream {
            inner,
            fds: VecDeque::new(),
        }
    }

    pub fn get_ref(&self) -> &UnixStream {
        &self.inner
    }
}

impl TakeFds for FdStream {
    fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
    }
}

/// A plain tokio stream reads with `read`, which closes passed
/// descriptors: it never has any.
impl TakeFds for UnixStream {
    fn take_fd(&mut self) -> Option<OwnedFd> {
        None
    }
}

impl<S: TakeFds + AsyncRead + AsyncWrite + Unpin> TakeFds for Connection<S> {
    fn take_fd(&mut self) -> Option<OwnedFd> {
        self.get_mut().take_fd()
    }
}

/// Space for the control message of [`MAX_FDS`] descriptors, aligned as
/// `cmsghdr` needs.
#[repr(C, align(8))]
struct ControlBuf([u8; 128]);

const _: () = assert!(
    std::mem::size_of::<ControlBuf>()
        >= (std::mem::size_of::<libc::cmsghdr>() + MAX_FDS * std::mem::size_of::<RawFd>() + 8)
);

/// One `recvmsg` into `buf`; descriptors go to `fds`.
fn recv_with_fds(
    fd: RawFd,
    buf: &mut ReadBuf<'_>,
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    // SAFETY: only the kernel writes into these bytes, and only the count
    // it reports is marked initialized below.
    let unfilled = unsafe { buf.unfilled_mut() };
    let mut iov = libc::iovec {
        iov_base: unfilled.as_mut_ptr().cast(),
        iov_len: unfilled.len(),
    };
    let mut control = ControlBuf([0; 128]);
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: every pointer in msg is valid for the lengths given, for the
    // duration of the call; the kernel writes at most those lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialized the first n bytes of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR walk within
    // msg_controllen and each SCM_RIGHTS payload holds whole RawFds.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fds.len() < MAX_WAITING {
                        fds.push_back(owned);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        tracing::warn!("IPC: passed descriptors were truncated");
    }
    Ok(n)
}

/// One `sendmsg` of (the start of) `data` with `fds` attached; returns the
/// bytes written.
fn send_with_fds(fd: RawFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = ControlBuf([0; 128]);
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE/LEN are pure arithmetic; the header is written
        // inside `control`, which the assertion above shows is big enough
        // for MAX_FDS descriptors (checked by the caller).
        unsafe {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(payload) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    // SAFETY: the pointers in msg are valid for the call; the kernel only
    // reads them.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            match this
                .inner
                .try_io(Interest::READABLE, || recv_with_fds(fd, buf, &mut this.fds))
            {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connection<UnixStream> {
    /// Writes the fed frames and then `msg`, with `fds` attached to the
    /// first byte; the receiver must read with an [`FdStream`].
    pub async fn send_with_fds<T: serde::Serialize>(
        &mut self,
        msg: &T,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), IpcError> {
        if fds.len() > MAX_FDS {
            return Err(IpcError::Protocol(format!(
                "{} descriptors in one frame (at most {MAX_FDS})",
                fds.len()
            )));
        }
        let mut out = self.take_out();
        append_frame(msg, &mut out)?;
        let stream = self.get_ref();
        let fd = stream.as_raw_fd();
        let sent = loop {
            stream.writable().await?;
            match stream.try_io(Interest::WRITABLE, || send_with_fds(fd, &out, fds)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        };
        // The rest of a partial write goes without descriptors.
        let result = self.write_raw(&out[sent..]).await;
        out.clear();
        self.restore_out(out);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    enum Msg {
        Plain(u32),
        WithFds(u32),
    }

    #[tokio::test]
    async fn descriptors_arrive_with_the_frame_that_announces_them() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Connection::new(a);
        let mut rx = Connection::new(FdStream::new(b));
        let mut files = Vec::new();
        for i in 0..3u8 {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&[b'a' + i; 10]).unwrap();
            files.push(f);
        }
        tx.feed(&Msg::Plain(1)).await.unwrap();
        let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        tx.send_with_fds(&Msg::WithFds(2), &borrowed[..2])
            .await
            .unwrap();
        tx.send(&Msg::Plain(3)).await.unwrap();
        tx.send_with_fds(&Msg::WithFds(4), &borrowed[2..])
            .await
            .unwrap();

        assert_eq!(rx.recv::<Msg>().await.unwrap(), Some(Msg::Plain(1)));
        assert_eq!(rx.recv::<Msg>().await.unwrap(), Some(Msg::WithFds(2)));
        for expected in [b'a', b'b'] {
            let mut f = std::fs::File::from(rx.take_fd().expect("a descriptor"));
            f.rewind().unwrap();
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert_eq!(got, vec![expected; 10]);
        }
        assert_eq!(rx.recv::<Msg>().await.unwrap(), Some(Msg::Plain(3)));
        assert_eq!(rx.recv::<Msg>().await.unwrap(), Some(Msg::WithFds(4)));
        assert!(rx.take_fd().is_some());
        assert!(rx.take_fd().is_none());
    }

    #[tokio::test]
    async fn a_big_frame_with_descriptors_survives_partial_writes() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Connection::new(a);
        let mut rx = Connection::new(FdStream::new(b));
        let f = tempfile::tempfile().unwrap();
        let big = vec![7u8; 900_000];
        let sender = tokio::spawn(async move {
            tx.send_with_fds(&big, &[f.as_fd()]).await.unwrap();
            tx
        });
        let got: Vec<u8> = rx.recv().await.unwrap().unwrap();
        assert_eq!(got.len(), 900_000);
        assert!(rx.take_fd().is_some());
        drop(sender.await.unwrap());
        assert_eq!(rx.recv::<Vec<u8>>().await.unwrap(), None);
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = UnixStream::pair().unwrap();
            let mut tx = Connection::new(a);
            let f = tempfile::tempfile().unwrap();
            let fds = vec![f.as_fd(); MAX_FDS + 1];
            assert!(matches!(
                tx.send_with_fds(&1u32, &fds).await,
                Err(IpcError::Protocol(_))
            ));
        });
    }
}
