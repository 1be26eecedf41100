//! TLS server names: the SNI of each ClientHello a socket sent
//! (`decode::TlsHelloRaw`), kept by socket cookie until the connection's rows
//! carry it (`net_conn.server_name`). Part of the decode stage, on the ring
//! reader's thread (see `run::reader`, which holds each connect row one pass
//! so that the ClientHello, sent right after the handshake, reaches it). No I/O.
//!
//! Parsing is bounded by the bytes the kernel kept: a ClientHello cut short
//! or malformed gives no name, never a guessed one.

use std::collections::HashMap;
use std::sync::Arc;

/// Sockets with a server name remembered at most (a name is forgotten when
/// its connection closes): beyond it, new ones are not remembered.
pub const MAX_SOCKETS: usize = 65_536;

/// The server name (`server_name` extension, type host_name) of a TLS record
/// holding a ClientHello, when the bytes given reach it.
pub fn server_name(b: &[u8]) -> Option<String> {
    // Record header (type 0x16, version, length), handshake header (type 1,
    // 3-byte length), client version, random.
    if b.len() < 43 || b[0] != 0x16 || b[5] != 0x01 {
        return None;
    }
    let mut at = 43;
    let session = usize::from(*b.get(at)?);
    at += 1 + session;
    let ciphers = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    at += 2 + ciphers;
    let compression = usize::from(*b.get(at)?);
    at += 1 + compression;
    let ext_len = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    at += 2;
    let ext_end = at + ext_len;
    while at + 4 <= ext_end {
        let ty = u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]);
        let len = usize::from(u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?]));
        at += 4;
        if ty == 0 {
            // server_name_list: length, then entries (type, length, name).
            let list = b.get(at..at + len)?;
            let mut i = 2;
            while i + 3 <= list.len() {
                let kind = list[i];
                let n = usize::from(u16::from_be_bytes([list[i + 1], list[i + 2]]));
                let name = list.get(i + 3..i + 3 + n)?;
                if kind == 0 {
                    // A host name is ASCII; anything else is shown escaped.
                    return Some(name.iter().map(|&c| if c.is_ascii_graphic() { char::from(c).to_string() } else { format!("\\{c:03}") }).collect());
                }
                i += 3 + n;
            }
            return None;
        }
        at += len;
    }
    None
}

/// Server names by socket cookie, until the connection closes.
#[derive(Default)]
pub struct ServerNames(HashMap<u64, Arc<str>>);

impl ServerNames {
    /// A ClientHello sent by socket `cookie`.
    pub fn hello(&mut self, cookie: u64, data: &[u8]) {
        if let Some(name) = server_name(data)
            && (self.0.len() < MAX_SOCKETS || self.0.contains_key(&cookie))
        {
            self.0.insert(cookie, name.into());
        }
    }

    /// The name of socket `cookie`, if its ClientHello gave one.
    pub fn get(&self, cookie: u64) -> Option<Arc<str>> {
        self.0.get(&cookie).cloned()
    }

    /// The socket closed: its name is no longer needed.
    pub fn closed(&mut self, cookie: u64) -> Option<Arc<str>> {
        self.0.remove(&cookie)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello record asking for `name` (after `before` other
    /// extensions of 10 bytes each).
    pub(crate) fn client_hello(name: &str, before: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        for i in 0..before {
            ext.extend_from_slice(&[0x0a, i as u8, 0, 6, 1, 2, 3, 4, 5, 6]);
        }
        let n = name.len() as u16;
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&(n + 5).to_be_bytes());
        ext.extend_from_slice(&(n + 3).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name.as_bytes());
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[7; 32]); // random
        hello.push(32);
        hello.extend_from_slice(&[9; 32]); // session id
        hello.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]); // two cipher suites
        hello.extend_from_slice(&[1, 0]); // compression: null
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut hs = vec![0x01, 0];
        hs.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn the_server_name_is_read_wherever_the_extension_sits_and_never_guessed() {
        assert_eq!(server_name(&client_hello("evil.example", 0)).as_deref(), Some("evil.example"));
        assert_eq!(server_name(&client_hello("evil.example", 40)).as_deref(), Some("evil.example"));
        // Cut anywhere before the name ends: no name, never a panic.
        let full = client_hello("evil.example", 3);
        for n in 0..full.len() {
            let got = server_name(&full[..n]);
            assert!(got.is_none(), "cut at {n}: {got:?}");
        }
        // Every byte flipped to odd values: never a panic.
        for i in 0..full.len() {
            for v in [0u8, 0x01, 0x7f, 0xff] {
                let mut b = full.clone();
                b[i] = v;
                let _ = server_name(&b);
            }
        }
        // Not a ClientHello (a ServerHello), not a handshake.
        let mut server_hello = full.clone();
        server_hello[5] = 0x02;
        assert_eq!(server_name(&server_hello), None);
        assert_eq!(server_name(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
    }

    #[test]
    fn names_are_kept_per_socket_until_it_closes() {
        let mut s = ServerNames::default();
        s.hello(1, &client_hello("a.example", 0));
        s.hello(2, b"not tls");
        assert_eq!(s.get(1).as_deref(), Some("a.example"));
        assert_eq!(s.get(2), None);
        assert_eq!(s.closed(1).as_deref(), Some("a.example"));
        assert_eq!(s.get(1), None);
    }
}
