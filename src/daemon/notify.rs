//! systemd's readiness protocol (`sd_notify`): one datagram to `$NOTIFY_SOCKET` when it is
//! set, nothing otherwise. The unit (`Type=notify`, `NotifyAccess=all`) learns that the mount
//! is up (`READY=1`) and, after a hot restart, which process is the daemon now
//! (`MAINPID=`), so the old daemon's exit does not stop the service.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (`KEY=VALUE` lines) to systemd, if it listens; failures are logged only.
pub(crate) fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        tracing::warn!("telling systemd {state:?} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reaches_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // SAFETY: this test is the only user of NOTIFY_SOCKET in this test binary.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        super::sd_notify("READY=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
