//! A small authoritative DNS server for tests: answers A, AAAA, MX (null MX
//! included) and TXT queries (SPF, `_dmarc` and `_domainkey` records) from
//! an in-memory zone the test builds, with NXDOMAIN for names it does not
//! know, NODATA for known names without records of the asked type, SERVFAIL
//! for names the test marks broken, and no answer at all for names the test
//! marks unanswered (so the resolver times out).
//!
//! It serves UDP and, on the same port, TCP (for resolvers that retry over
//! TCP), each on a background thread; dropping the [`DnsServer`] stops both.
//! The wire format (RFC 1035 section 4) is written by hand: a question is
//! parsed strictly, answers point back at the question's name (the only
//! compression used). A UDP answer larger than [`UDP_MAX`] goes out
//! truncated (TC), as a real server's does, and the resolver asks again
//! over TCP.
//!
//! ```no_run
//! use postern_tests::dns::{DnsServer, Record};
//! let dns = DnsServer::start(vec![
//!     Record::mx("example.test", 10, "mx1.example.test"),
//!     Record::a("mx1.example.test", "127.0.0.2".parse().unwrap()),
//! ]);
//! let dns_servers = format!("{}", dns.addr); // for the dns_servers parameter
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_MX: u16 = 15;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const RCODE_NOERROR: u8 = 0;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;

/// TTL of every answer; short, so a resolver's cache does not outlive a
/// test that changes its zone.
const TTL: u32 = 1;

/// The largest UDP answer sent whole: the EDNS payload size resolvers
/// advertise by default (1232, the DNS flag day 2020 value).
pub const UDP_MAX: usize = 1232;

/// What a name holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Preference and exchange; the exchange `.` (or empty) is a null MX
    /// (RFC 7505).
    Mx(u16, String),
    /// The text of a TXT record; written as strings of at most 255 bytes
    /// (RFC 1035 3.3.14), which a reader joins back (RFC 7208 3.3).
    Txt(String),
    /// A PTR record's name (reverse DNS).
    Ptr(String),
    /// Every query for this name fails with SERVFAIL.
    ServFail,
    /// Every query for this name goes unanswered: the resolver times out.
    Unanswered,
}

/// One resource record of the test zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name, any case, with or without the final dot.
    pub name: String,
    pub data: RData,
}

impl Record {
    pub fn a(name: &str, ip: Ipv4Addr) -> Record {
        Record {
            name: name.to_string(),
            data: RData::A(ip),
        }
    }

    pub fn aaaa(name: &str, ip: Ipv6Addr) -> Record {
        Record {
            name: name.to_string(),
            data: RData::Aaaa(ip),
        }
    }

    pub fn mx(name: &str, preference: u16, exchange: &str) -> Record {
        Record {
            name: name.to_string(),
            data: RData::Mx(preference, exchange.to_string()),
        }
    }

    /// `name. IN MX 0 .`: the domain accepts no mail.
    pub fn null_mx(name: &str) -> Record {
        Record::mx(name, 0, ".")
    }

    /// `name. IN TXT "text"`, split into 255-byte strings when longer.
    pub fn txt(name: &str, text: &str) -> Record {
        Record {
            name: name.to_string(),
            data: RData::Txt(text.to_string()),
        }
    }

    /// The PTR record of `ip` (`d.c.b.a.in-addr.arpa.` or the nibbles of
    /// an IPv6 address under `ip6.arpa.`) naming `host`.
    pub fn ptr(ip: std::net::IpAddr, host: &str) -> Record {
        Record {
            name: reverse_name(ip),
            data: RData::Ptr(host.to_string()),
        }
    }

    pub fn servfail(name: &str) -> Record {
        Record {
            name: name.to_string(),
            data: RData::ServFail,
        }
    }

    /// Queries for `name` are dropped, as by a dead or firewalled server.
    pub fn unanswered(name: &str) -> Record {
        Record {
            name: name.to_string(),
            data: RData::Unanswered,
        }
    }
}

/// The reverse-DNS owner name of `ip`.
pub fn reverse_name(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => {
            let mut out = String::new();
            for b in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            out + "ip6.arpa."
        }
    }
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// Where it listens (UDP, and TCP on the same port when that was free).
    pub addr: SocketAddr,
    zone: Arc<Mutex<Vec<Record>>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `records` on 127.0.0.1 at a free port.
    pub fn start(records: Vec<Record>) -> DnsServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), records)
    }

    /// Serves `records` at `bind` (port 0 picks a free one).
    pub fn start_on(bind: SocketAddr, records: Vec<Record>) -> DnsServer {
        let (udp, tcp) = bind_pair(bind);
        let addr = udp.local_addr().unwrap();
        // Short timeouts so the threads notice `stop` promptly.
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let zone = Arc::new(Mutex::new(records));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        {
            let (zone, stop, queries) = (zone.clone(), stop.clone(), queries.clone());
            threads.push(std::thread::spawn(move || {
                serve_udp(udp, &zone, &stop, &queries)
            }));
        }
        // TCP is a convenience: skipped if someone holds a given TCP port.
        if let Some(tcp) = tcp {
            tcp.set_nonblocking(true).unwrap();
            let (zone, stop, queries) = (zone.clone(), stop.clone(), queries.clone());
            threads.push(std::thread::spawn(move || {
                serve_tcp(tcp, &zone, &stop, &queries)
            }));
        }
        DnsServer {
            addr,
            zone,
            queries,
            stop,
            threads,
        }
    }

    /// Adds a record to the running zone.
    pub fn add(&self, record: Record) {
        self.zone.lock().unwrap().push(record);
    }

    /// Replaces the whole zone.
    pub fn set_records(&self, records: Vec<Record>) {
        *self.zone.lock().unwrap() = records;
    }

    /// Removes every record owned by `name`, making it NXDOMAIN.
    pub fn remove(&self, name: &str) {
        let key = normalize(name);
        self.zone
            .lock()
            .unwrap()
            .retain(|r| normalize(&r.name) != key);
    }

    /// How many queries have been answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

/// A UDP socket and, when it can be had, the TCP listener on the same
/// port. With port 0 it retries until both bind, so a TCP port taken by
/// another test never leaves the server without TCP.
fn bind_pair(bind: SocketAddr) -> (UdpSocket, Option<TcpListener>) {
    for _ in 0..100 {
        let udp = UdpSocket::bind(bind).expect("bind DNS UDP socket");
        match TcpListener::bind(udp.local_addr().unwrap()) {
            Ok(tcp) => return (udp, Some(tcp)),
            Err(_) if bind.port() == 0 => continue,
            Err(_) => return (udp, None),
        }
    }
    (UdpSocket::bind(bind).expect("bind DNS UDP socket"), None)
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_udp(sock: UdpSocket, zone: &Mutex<Vec<Record>>, stop: &AtomicBool, n: &AtomicUsize) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let records = zone.lock().unwrap().clone();
        if let Some(reply) = answer(&buf[..len], &records) {
            n.fetch_add(1, Ordering::Relaxed);
            let _ = sock.send_to(&truncate_for_udp(reply), peer);
        }
    }
}

fn serve_tcp(
    l: TcpListener,
    zone: &Arc<Mutex<Vec<Record>>>,
    stop: &AtomicBool,
    n: &Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((stream, _)) => {
                // A thread per connection, so an idle resolver connection
                // does not hold up the next one; it ends on the read timeout.
                let (zone, n) = (zone.clone(), n.clone());
                std::thread::spawn(move || serve_tcp_conn(stream, &zone, &n));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Answers length-prefixed queries (RFC 1035 4.2.2) until the peer closes.
fn serve_tcp_conn(
    mut s: TcpStream,
    zone: &Mutex<Vec<Record>>,
    n: &AtomicUsize,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut q)?;
        let records = zone.lock().unwrap().clone();
        if let Some(reply) = answer(&q, &records) {
            n.fetch_add(1, Ordering::Relaxed);
            let mut out = (reply.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&reply);
            s.write_all(&out)?;
        }
    }
}

/// `reply` if it fits [`UDP_MAX`]; otherwise its header and question with
/// TC set and no records, so the resolver retries over TCP.
fn truncate_for_udp(mut reply: Vec<u8>) -> Vec<u8> {
    if reply.len() <= UDP_MAX {
        return reply;
    }
    let end = parse_question(&reply).map_or(12, |q| q.end);
    reply.truncate(end);
    reply[2] |= 0x02; // TC
    reply[6..8].copy_from_slice(&[0, 0]); // ANCOUNT
    reply
}

/// `text` as TXT RDATA: length-prefixed strings of at most 255 bytes; an
/// empty text is one empty string.
fn txt_rdata(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 255 + 1);
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}

/// Lowercase, without the final dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The question of a query: its name as text, type, class, and where the
/// question section ends.
#[derive(Debug, PartialEq, Eq)]
struct Question {
    name: String,
    qtype: u16,
    qclass: u16,
    end: usize,
}

/// Parses the first question (uncompressed, as every resolver sends it).
fn parse_question(msg: &[u8]) -> Option<Question> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(pos + 2)?, *msg.get(pos + 3)?]);
    Some(Question {
        name: labels.join("."),
        qtype,
        qclass,
        end: pos + 4,
    })
}

/// Writes `name` as labels; `.` or empty is the root.
fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let label = &label.as_bytes()[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// The response to one query, or None for something that is not a query
/// (too short, or a response) and for names the zone leaves unanswered.
fn answer(query: &[u8], zone: &[Record]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (query[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    let question = (qdcount == 1).then(|| parse_question(query)).flatten();

    let mut rcode = RCODE_NOERROR;
    let mut answers: Vec<&RData> = Vec::new();
    match &question {
        _ if opcode != 0 => rcode = RCODE_NOTIMP,
        None => rcode = RCODE_FORMERR,
        Some(q) => {
            let key = normalize(&q.name);
            let owned: Vec<&RData> = zone
                .iter()
                .filter(|r| normalize(&r.name) == key)
                .map(|r| &r.data)
                .collect();
            if owned.contains(&&RData::Unanswered) {
                return None;
            }
            if owned.contains(&&RData::ServFail) {
                rcode = RCODE_SERVFAIL;
            } else if owned.is_empty() {
                rcode = RCODE_NXDOMAIN;
            } else if q.qclass == CLASS_IN {
                answers = owned
                    .into_iter()
                    .filter(|d| {
                        matches!(
                            (d, q.qtype),
                            (RData::A(_), TYPE_A)
                                | (RData::Aaaa(_), TYPE_AAAA)
                                | (RData::Mx(..), TYPE_MX)
                                | (RData::Txt(_), TYPE_TXT)
                                | (RData::Ptr(_), TYPE_PTR)
                        )
                    })
                    .collect();
            }
        }
    }

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]); // id
    // QR, the opcode, AA, RD as asked; RA.
    out.push(0x80 | (opcode << 3) | 0x04 | (query[2] & 0x01));
    out.push(0x80 | rcode);
    let qd = u16::from(question.is_some());
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // NS, AR
    if let Some(q) = &question {
        out.extend_from_slice(&query[12..q.end]);
    }
    for data in answers {
        out.extend_from_slice(&[0xc0, 12]); // the question's name
        let (rtype, rdata) = match data {
            RData::A(ip) => (TYPE_A, ip.octets().to_vec()),
            RData::Aaaa(ip) => (TYPE_AAAA, ip.octets().to_vec()),
            RData::Mx(pref, exchange) => {
                let mut d = pref.to_be_bytes().to_vec();
                write_name(&mut d, exchange);
                (TYPE_MX, d)
            }
            RData::Txt(text) => (TYPE_TXT, txt_rdata(text)),
            RData::Ptr(host) => {
                let mut d = Vec::new();
                write_name(&mut d, host);
                (TYPE_PTR, d)
            }
            RData::ServFail | RData::Unanswered => {
                unreachable!("SERVFAIL and unanswered names have no answers")
            }
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as a resolver writes it, with an EDNS OPT record after the
    /// question (which the server must ignore).
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        write_name(&mut q, name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        q
    }

    fn zone() -> Vec<Record> {
        vec![
            Record::mx("Example.TEST.", 10, "mx1.example.test"),
            Record::mx("example.test", 20, "mx2.example.test"),
            Record::a("mx1.example.test", Ipv4Addr::new(127, 0, 0, 2)),
            Record::aaaa("mx1.example.test", Ipv6Addr::LOCALHOST),
            Record::null_mx("null.test"),
            Record::servfail("broken.test"),
            Record::txt("example.test", "v=spf1 ip4:127.0.0.2 -all"),
            Record::txt("long.test", &"k".repeat(300)),
            Record::txt("huge.test", &"h".repeat(1500)),
            Record::unanswered("silent.test"),
        ]
    }

    fn rcode(reply: &[u8]) -> u8 {
        reply[3] & 0x0f
    }

    fn ancount(reply: &[u8]) -> u16 {
        u16::from_be_bytes([reply[6], reply[7]])
    }

    #[test]
    fn parses_the_question_and_skips_edns() {
        let q = query(7, "mx1.Example.test", TYPE_A);
        let parsed = parse_question(&q).unwrap();
        assert_eq!(parsed.name, "mx1.Example.test");
        assert_eq!((parsed.qtype, parsed.qclass), (TYPE_A, CLASS_IN));
        assert_eq!(parsed.end, 12 + 18 + 4);
    }

    #[test]
    fn answers_a_with_a_pointer_to_the_question() {
        let q = query(0x1234, "MX1.example.test.", TYPE_A);
        let r = answer(&q, &zone()).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x84, 0x84, "QR and AA");
        assert_eq!(rcode(&r), RCODE_NOERROR);
        assert_eq!(ancount(&r), 1);
        let end = parse_question(&q).unwrap().end;
        assert_eq!(&r[12..end], &q[12..end]);
        assert_eq!(
            &r[end..],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 2]
        );
    }

    #[test]
    fn answers_mx_and_null_mx() {
        let r = answer(&query(1, "example.test", TYPE_MX), &zone()).unwrap();
        assert_eq!(ancount(&r), 2);
        let r = answer(&query(1, "null.test", TYPE_MX), &zone()).unwrap();
        assert_eq!(ancount(&r), 1);
        let end = parse_question(&query(1, "null.test", TYPE_MX)).unwrap().end;
        // pointer, type, class, ttl, rdlength 3, preference 0, root name.
        assert_eq!(
            &r[end..],
            &[0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 1, 0, 3, 0, 0, 0]
        );
    }

    #[test]
    fn nxdomain_nodata_and_servfail() {
        let r = answer(&query(1, "nowhere.test", TYPE_MX), &zone()).unwrap();
        assert_eq!((rcode(&r), ancount(&r)), (RCODE_NXDOMAIN, 0));
        let r = answer(&query(1, "mx1.example.test", TYPE_MX), &zone()).unwrap();
        assert_eq!((rcode(&r), ancount(&r)), (RCODE_NOERROR, 0));
        let r = answer(&query(1, "broken.test", TYPE_A), &zone()).unwrap();
        assert_eq!(rcode(&r), RCODE_SERVFAIL);
    }

    #[test]
    fn answers_txt_split_into_255_byte_strings() {
        let q = query(1, "example.test", TYPE_TXT);
        let end = parse_question(&q).unwrap().end;
        let r = answer(&q, &zone()).unwrap();
        assert_eq!(ancount(&r), 1);
        let text = b"v=spf1 ip4:127.0.0.2 -all";
        assert_eq!(&r[end + 2..end + 4], &[0, 16]);
        assert_eq!(&r[end + 10..end + 12], &[0, text.len() as u8 + 1]);
        assert_eq!(r[end + 12] as usize, text.len());
        assert_eq!(&r[end + 13..], text);

        let q = query(1, "long.test", TYPE_TXT);
        let r = answer(&q, &zone()).unwrap();
        let rdata = &r[parse_question(&q).unwrap().end + 12..];
        assert_eq!(rdata.len(), 302);
        assert_eq!((rdata[0], rdata[256]), (255, 45));
        // A TXT-only name has no A records: NODATA.
        let r = answer(&query(1, "long.test", TYPE_A), &zone()).unwrap();
        assert_eq!((rcode(&r), ancount(&r)), (RCODE_NOERROR, 0));
    }

    #[test]
    fn truncates_big_udp_answers_and_drops_unanswered_names() {
        let q = query(1, "huge.test", TYPE_TXT);
        let r = truncate_for_udp(answer(&q, &zone()).unwrap());
        assert_eq!(r.len(), parse_question(&q).unwrap().end);
        assert_eq!((r[2] & 0x02, ancount(&r)), (0x02, 0));
        let small = answer(&query(1, "example.test", TYPE_TXT), &zone()).unwrap();
        assert_eq!(truncate_for_udp(small.clone()), small);
        assert!(answer(&query(1, "silent.test", TYPE_TXT), &zone()).is_none());
    }

    #[test]
    fn refuses_garbage_quietly() {
        assert!(answer(&[0; 5], &zone()).is_none());
        let mut q = query(1, "example.test", TYPE_A);
        q[2] |= 0x80; // a response, not a query
        assert!(answer(&q, &zone()).is_none());
        let q = &query(1, "example.test", TYPE_A)[..20];
        assert_eq!(rcode(&answer(q, &zone()).unwrap()), RCODE_FORMERR);
    }

    #[test]
    fn serves_over_udp_and_tcp_and_changes_at_run_time() {
        let dns = DnsServer::start(zone());
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.send_to(&query(9, "mx1.example.test", TYPE_AAAA), dns.addr)
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(ancount(&buf[..n]), 1);

        dns.add(Record::a("late.test", Ipv4Addr::new(127, 0, 0, 9)));
        let mut tcp = TcpStream::connect(dns.addr).unwrap();
        let q = query(10, "late.test", TYPE_A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        tcp.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).unwrap();
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut r).unwrap();
        assert_eq!((rcode(&r), ancount(&r)), (RCODE_NOERROR, 1));
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 9]);

        dns.remove("late.test");
        sock.send_to(&query(11, "late.test", TYPE_A), dns.addr)
            .unwrap();
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(rcode(&buf[..n]), RCODE_NXDOMAIN);
        assert_eq!(dns.queries(), 3);
    }
}
