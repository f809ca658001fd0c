//! Option negotiation (`SMFIC_OPTNEG`): what Postern offers for each
//! `milter_protocol` setting, and what holds once the filter has answered.
//! Pure: the client sends [`Offer::packet`] and judges the answer with
//! [`Offer::accept`].

use crate::macros::{MacroLists, Stage};
use crate::wire::{Command, OptNegReply, Packet, smfif, smfim, smfip};

/// Every action Postern can carry out for a filter (Postfix offers the
/// same nine).
pub const MTA_ACTIONS: u32 = smfif::ADDHDRS
    | smfif::CHGBODY
    | smfif::ADDRCPT
    | smfif::DELRCPT
    | smfif::CHGHDRS
    | smfif::QUARANTINE
    | smfif::CHGFROM
    | smfif::ADDRCPT_PAR
    | smfif::SETSYMLIST;

/// Events and flags of each protocol version (Postfix's
/// `MILTER8_V*_PROTO_MASK`); version 5 does not exist.
const V2: u32 = smfip::NOCONNECT
    | smfip::NOHELO
    | smfip::NOMAIL
    | smfip::NORCPT
    | smfip::NOBODY
    | smfip::NOHDRS
    | smfip::NOEOH;
const V3: u32 = V2 | smfip::NOUNKNOWN;
const V4: u32 = V3 | smfip::NODATA;
const V6: u32 = V4 | smfip::SKIP | smfip::RCPT_REJ | smfip::NOREPLY_MASK | smfip::HDR_LEADSPC;

/// The flags a version defines, highest defined version not above it.
fn version_mask(version: u32) -> Option<u32> {
    match version {
        6.. => Some(V6),
        4 | 5 => Some(V4),
        3 => Some(V3),
        2 => Some(V2),
        _ => None,
    }
}

/// What Postern proposes: a `milter_protocol` value parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The version sent, 2, 3, 4 or 6.
    pub version: u32,
    /// The `SMFIP_*` flags offered.
    pub protocol: u32,
}

impl Offer {
    /// Parses `milter_protocol`: one version (2, 3, 4 or 6), optionally
    /// with `no_header_reply`, separated by commas or spaces.
    pub fn parse(text: &str) -> Result<Offer, String> {
        let mut version = None;
        let mut protocol = 0;
        for word in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            match word {
                "2" | "3" | "4" | "6" if version.is_none() => {
                    let v: u32 = word.parse().unwrap_or(6);
                    version = Some(v);
                    protocol |= version_mask(v).unwrap_or(V6);
                }
                "no_header_reply" => protocol |= smfip::NR_HDR,
                _ => return Err(format!("bad protocol information: {word}")),
            }
        }
        match version {
            Some(version) => Ok(Offer { version, protocol }),
            None => Err("no protocol version information".into()),
        }
    }

    /// The `SMFIC_OPTNEG` packet.
    pub fn packet(&self) -> Vec<u8> {
        Packet::new(Command::OptNeg)
            .long(self.version)
            .long(MTA_ACTIONS)
            .long(self.protocol)
            .finish()
    }

    /// Judges the filter's answer, as Postfix's milter8_connect() does: a
    /// higher version or an action Postern does not offer is an error; a
    /// lower version keeps the events that version lacks from being sent;
    /// protocol flags are those both sides named. `warn` hears what is
    /// ignored (unknown macro classes).
    pub fn accept(
        &self,
        reply: &OptNegReply,
        mut warn: impl FnMut(String),
    ) -> Result<Negotiated, String> {
        if reply.version > self.version {
            return Err(format!(
                "protocol version {} conflict with MTA protocol version {}",
                reply.version, self.version
            ));
        }
        if reply.actions & !MTA_ACTIONS != 0 {
            return Err(format!(
                "request mask {:#x} conflict with MTA request mask {:#x}",
                reply.actions, MTA_ACTIONS
            ));
        }
        // Events outside the offered version are never sent.
        let mut unsent = smfip::NOSEND_MASK & !self.protocol;
        if reply.version < self.version {
            match version_mask(reply.version) {
                Some(mask) => unsent |= smfip::NOSEND_MASK & !mask,
                None => warn(format!("unexpected protocol version {}", reply.version)),
            }
        }
        let mut macro_lists = Vec::new();
        for (class, names) in &reply.macro_lists {
            let stage = match *class {
                smfim::CONNECT => Stage::Connect,
                smfim::HELO => Stage::Helo,
                smfim::ENVFROM => Stage::Mail,
                smfim::ENVRCPT => Stage::Rcpt,
                smfim::DATA => Stage::Data,
                smfim::EOM => Stage::EndOfData,
                smfim::EOH => Stage::EndOfHeader,
                other => {
                    warn(format!("ignoring unknown macro type {other}"));
                    continue;
                }
            };
            macro_lists.push((stage, MacroLists::split(names)));
        }
        Ok(Negotiated {
            version: reply.version,
            actions: reply.actions,
            protocol: reply.protocol & self.protocol,
            unsent,
            macro_lists,
        })
    }
}

/// What one filter connection runs with after negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The filter's protocol version.
    pub version: u32,
    /// `SMFIF_*` actions the filter may take.
    pub actions: u32,
    /// `SMFIP_*` flags in force: offered and asked for.
    pub protocol: u32,
    /// `SMFIP_NO*` events its version does not define (never sent, not
    /// even their macros).
    pub unsent: u32,
    /// Macro lists the filter asked for with `SMFIR_SETSYMLIST`; they
    /// replace the configured list of their stage for this filter.
    pub macro_lists: Vec<(Stage, Vec<String>)>,
}

impl Negotiated {
    /// Whether the filter asked for flag `f` (`smfip::*`).
    pub fn has(&self, f: u32) -> bool {
        self.protocol & f != 0
    }

    /// Whether the filter may take action `a` (`smfif::*`).
    pub fn allows(&self, a: u32) -> bool {
        self.actions & a != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(version: u32, actions: u32, protocol: u32) -> OptNegReply {
        OptNegReply {
            version,
            actions,
            protocol,
            macro_lists: Vec::new(),
        }
    }

    #[test]
    fn offers_per_version() {
        let v6 = Offer::parse("6").unwrap();
        assert_eq!(v6.version, 6);
        assert_eq!(v6.protocol, 0x1f_ffff);
        let p = v6.packet();
        assert_eq!(&p[..5], &[0, 0, 0, 13, b'O']);
        assert_eq!(&p[5..9], &6u32.to_be_bytes());
        assert_eq!(&p[9..13], &0x1ffu32.to_be_bytes());
        assert_eq!(Offer::parse("2").unwrap().protocol, 0x7f);
        assert_eq!(Offer::parse("3").unwrap().protocol, 0x17f);
        assert_eq!(Offer::parse("4").unwrap().protocol, 0x37f);
        let nhr = Offer::parse("2, no_header_reply").unwrap();
        assert_eq!(nhr.protocol, 0xff);
        assert!(Offer::parse("5").is_err());
        assert!(Offer::parse("2 6").is_err());
        assert_eq!(
            Offer::parse("no_header_reply").unwrap_err(),
            "no protocol version information"
        );
        assert_eq!(
            Offer::parse("seven").unwrap_err(),
            "bad protocol information: seven"
        );
    }

    #[test]
    fn intersects_flags_and_checks_actions() {
        let v4 = Offer::parse("4").unwrap();
        let n = v4
            .accept(
                &reply(4, smfif::ADDHDRS, smfip::NOHELO | smfip::NR_HDR),
                |_| {},
            )
            .unwrap();
        assert!(n.has(smfip::NOHELO));
        assert!(!n.has(smfip::NR_HDR), "not offered at version 4");
        assert!(n.allows(smfif::ADDHDRS) && !n.allows(smfif::CHGBODY));
        let err = v4.accept(&reply(6, 0, 0), |_| {}).unwrap_err();
        assert_eq!(
            err,
            "protocol version 6 conflict with MTA protocol version 4"
        );
        let err = v4.accept(&reply(4, 1 << 9, 0), |_| {}).unwrap_err();
        assert_eq!(
            err,
            "request mask 0x200 conflict with MTA request mask 0x1ff"
        );
    }

    #[test]
    fn an_older_filter_gets_no_newer_events() {
        let v6 = Offer::parse("6").unwrap();
        let n = v6.accept(&reply(2, 0, 0), |_| {}).unwrap();
        assert_eq!(n.unsent, smfip::NOUNKNOWN | smfip::NODATA);
        let n = v6.accept(&reply(6, 0, 0), |_| {}).unwrap();
        assert_eq!(n.unsent, 0);
        let mut warned = Vec::new();
        let n = v6.accept(&reply(1, 0, 0), |w| warned.push(w)).unwrap();
        assert_eq!(n.unsent, 0);
        assert_eq!(warned, ["unexpected protocol version 1"]);
    }

    #[test]
    fn macro_lists_from_setsymlist() {
        let v6 = Offer::parse("6").unwrap();
        let mut r = reply(6, smfif::SETSYMLIST, 0);
        r.macro_lists = vec![(3, "{rcpt_addr} i".into()), (9, "x".into())];
        let mut warned = Vec::new();
        let n = v6.accept(&r, |w| warned.push(w)).unwrap();
        assert_eq!(
            n.macro_lists,
            [(
                Stage::Rcpt,
                vec!["{rcpt_addr}".to_string(), "i".to_string()]
            )]
        );
        assert_eq!(warned, ["ignoring unknown macro type 9"]);
    }
}
