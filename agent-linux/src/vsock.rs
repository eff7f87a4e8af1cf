//! A vsock address for rustix's socket calls, which have no vsock
//! address type of their own.

use rustix::net::addr::{SocketAddrArg, SocketAddrLen, SocketAddrOpaque};

/// `struct sockaddr_vm`: a context id (CID) and a port.
pub struct VsockAddr(libc::sockaddr_vm);

impl VsockAddr {
    /// The address of `port` at context `cid`.
    pub fn new(cid: u32, port: u32) -> VsockAddr {
        VsockAddr(libc::sockaddr_vm {
            svm_family: libc::AF_VSOCK as libc::sa_family_t,
            svm_reserved1: 0,
            svm_port: port,
            svm_cid: cid,
            svm_zero: [0; 4],
        })
    }
}

// SAFETY: `f` is called with a pointer to the whole `sockaddr_vm` held by
// `self`, which lives for the call, and with that struct's size: a valid
// vsock address for bind and connect.
unsafe impl SocketAddrArg for VsockAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(*const SocketAddrOpaque, SocketAddrLen) -> R,
    ) -> R {
        let len = std::mem::size_of::<libc::sockaddr_vm>() as SocketAddrLen;
        f((&raw const self.0).cast(), len)
    }
}
