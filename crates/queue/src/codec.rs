//! The one place that knows stored records are bincode (so the encoding can
//! be swapped): a version byte, then bincode 2 `standard()` with an
//! allocation limit. Decoding garbage returns an error, never panics.
//!
//! Version 4 (this one) adds the envelope's content filter. Version 3
//! stored the client's protocol as postern-envelope's
//! [`ClientProtocol`](postern_envelope::ClientProtocol); version 2 stored
//! it as its name. Version 2 introduced the typed ORCPT,
//! NOTIFY and enhanced status code; version 1 stored them as text and
//! NOTIFY as a bit set. Records are written in the current version only;
//! older records are still read ([`Record::from_old`]) and converted, so a
//! queue written by an older qmgr keeps working, and each is rewritten in
//! the current version the next time the message changes.

use serde::Serialize;
use serde::de::DeserializeOwned;

const VERSION: u8 = 4;
/// Upper bound for any decoded record (an envelope with thousands of
/// recipients is well below this).
const LIMIT: usize = 16 << 20;

/// A stored record type.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// Decodes the body of a record in an older `version` (1 to 3); by
    /// default its layout is the current one.
    fn from_old(_version: u8, body: &[u8]) -> Result<Self, String> {
        decode_body(body)
    }
}

impl Record for crate::types::MessageMeta {}
impl Record for Vec<(Vec<u8>, Option<Vec<u8>>)> {}
impl Record for crate::types::Envelope {
    fn from_old(version: u8, body: &[u8]) -> Result<Self, String> {
        match version {
            1 => decode_body::<legacy::EnvelopeV1>(body).map(|e| e.map(Into::into, Into::into)),
            2 => decode_body::<legacy::EnvelopeV2>(body).map(|e| e.map(|r| r, Into::into)),
            _ => decode_body::<legacy::EnvelopeV3>(body).map(|e| e.map(|r| r, |c| c)),
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    encode_versioned(VERSION, value)
}

fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, String> {
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    let mut out = vec![version];
    let body = bincode::serde::encode_to_vec(value, cfg).map_err(|e| e.to_string())?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn decode<T: Record>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => decode_body(rest),
        Some((&v @ (1..=3), rest)) => T::from_old(v, rest),
        Some((v, _)) => Err(format!("unknown record version {v}")),
        None => Err("empty record".into()),
    }
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    let (v, used) = bincode::serde::decode_from_slice(body, cfg).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(v)
}

/// The envelope of versions 1 to 3, the version-1 recipient and the
/// client of versions 1 and 2, kept only to read them.
mod legacy {
    use postern_envelope::{ClientProtocol, EnhancedStatus, Notify, Orcpt, Ret};
    use serde::{Deserialize, Serialize};

    use crate::types;

    /// Version 1 stored the recipients and the client differently.
    pub(super) type EnvelopeV1 = EnvelopeOf<Recipient, ClientInfo>;
    /// Version 2 stored only the client differently.
    pub(super) type EnvelopeV2 = EnvelopeOf<types::Recipient, ClientInfo>;
    /// Version 3 had no content filter.
    pub(super) type EnvelopeV3 = EnvelopeOf<types::Recipient, postern_envelope::ClientInfo>;

    /// The envelope before version 4, over its recipient and client types.
    #[derive(Serialize, Deserialize, Default)]
    pub(super) struct EnvelopeOf<R, C> {
        pub sender: String,
        pub recipients: Vec<R>,
        pub arrival_unix: i64,
        pub size: u64,
        pub client: Option<C>,
        pub envid: Option<String>,
        pub ret: Option<Ret>,
        pub smtputf8: bool,
        pub body_8bit: bool,
    }

    impl<R, C> EnvelopeOf<R, C> {
        /// Today's envelope, each recipient converted by `f` and the
        /// client by `g`.
        pub(super) fn map(
            self,
            f: impl FnMut(R) -> types::Recipient,
            g: impl FnOnce(C) -> postern_envelope::ClientInfo,
        ) -> types::Envelope {
            types::Envelope {
                sender: self.sender,
                recipients: self.recipients.into_iter().map(f).collect(),
                arrival_unix: self.arrival_unix,
                size: self.size,
                client: self.client.map(g),
                envid: self.envid,
                ret: self.ret,
                smtputf8: self.smtputf8,
                body_8bit: self.body_8bit,
                filter: None,
            }
        }
    }

    /// The client as versions 1 and 2 stored it, the protocol by name.
    #[derive(Serialize, Deserialize, Default)]
    pub(super) struct ClientInfo {
        pub name: String,
        pub addr: String,
        pub helo: String,
        pub protocol: String,
        pub sasl_username: Option<String>,
    }

    impl From<ClientInfo> for postern_envelope::ClientInfo {
        fn from(c: ClientInfo) -> postern_envelope::ClientInfo {
            postern_envelope::ClientInfo {
                name: c.name,
                addr: c.addr,
                helo: c.helo,
                // Only smtpd stored a client, with one of the names; the
                // field is shown, never acted on, so a stray one is not
                // worth losing the message over.
                protocol: ClientProtocol::from_name(&c.protocol).unwrap_or_default(),
                sasl_username: c.sasl_username,
            }
        }
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Recipient {
        pub address: String,
        /// `type;address`.
        pub orcpt: Option<String>,
        /// 0 not given, 1 NEVER, 2 SUCCESS, 4 FAILURE, 8 DELAY.
        pub notify: u8,
        pub state: RcptState,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum RcptState {
        Pending,
        Sent { at: i64, reply: String },
        Bounced { at: i64, reply: String, dsn: String },
        Deferred { reason: String },
        DelayNotified { reason: String },
    }

    impl From<Recipient> for types::Recipient {
        fn from(r: Recipient) -> types::Recipient {
            let notify = match r.notify {
                0 => None,
                n if n & 1 != 0 => Some(Notify::NEVER),
                n => Some(Notify {
                    success: n & 2 != 0,
                    failure: n & 4 != 0,
                    delay: n & 8 != 0,
                }),
            };
            let orcpt = r.orcpt.map(|o| match o.split_once(';') {
                Some((t, a)) => Orcpt {
                    addr_type: t.to_string(),
                    addr: a.to_string(),
                },
                None => Orcpt::rfc822(o),
            });
            let state = match r.state {
                RcptState::Pending => types::RcptState::Pending,
                RcptState::Sent { at, reply } => types::RcptState::Sent { at, reply },
                RcptState::Bounced { at, reply, dsn } => types::RcptState::Bounced {
                    at,
                    reply,
                    dsn: dsn.parse().unwrap_or(EnhancedStatus::PERM_UNDEFINED),
                },
                RcptState::Deferred { reason } => types::RcptState::Deferred { reason },
                RcptState::DelayNotified { reason } => types::RcptState::DelayNotified { reason },
            };
            types::Recipient {
                address: r.address,
                orcpt,
                notify,
                state,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Envelope, MessageMeta, QueueState, RcptState};
    use postern_envelope::{ClientProtocol, Notify, Orcpt};

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.push((seed >> 33) as u8);
            }
            for version in [1, 2, 3, VERSION] {
                if let Some(b) = buf.first_mut() {
                    *b = version;
                }
                let _ = decode::<Envelope>(&buf);
                let _ = decode::<MessageMeta>(&buf);
            }
        }
        // A huge length prefix must hit the limit, not allocate.
        let evil = [
            VERSION, 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F,
        ];
        assert!(decode::<Envelope>(&evil).is_err());
    }

    #[test]
    fn a_version_1_envelope_is_read_and_converted() {
        let rcpt = |address: &str, orcpt: Option<&str>, notify, state| legacy::Recipient {
            address: address.into(),
            orcpt: orcpt.map(Into::into),
            notify,
            state,
        };
        let old = legacy::EnvelopeV1 {
            sender: "a@x".into(),
            recipients: vec![
                rcpt("b@y", Some("rfc822;B@y"), 2 | 4, legacy::RcptState::Pending),
                rcpt(
                    "c@y",
                    None,
                    1,
                    legacy::RcptState::Deferred {
                        reason: "busy".into(),
                    },
                ),
                rcpt(
                    "d@y",
                    Some("d@y"),
                    0,
                    legacy::RcptState::Bounced {
                        at: 7,
                        reply: "550 no".into(),
                        dsn: "5.1.1".into(),
                    },
                ),
            ],
            arrival_unix: 5,
            size: 10,
            client: None,
            envid: Some("E1".into()),
            ret: None,
            smtputf8: false,
            body_8bit: true,
        };
        let bytes = encode_versioned(1, &old).unwrap();
        let env: Envelope = decode(&bytes).unwrap();
        assert_eq!(env.sender, "a@x");
        assert_eq!((env.arrival_unix, env.size, env.body_8bit), (5, 10, true));
        let r = &env.recipients;
        assert_eq!(r[0].orcpt, Some(Orcpt::rfc822("B@y")));
        assert_eq!(
            r[0].notify,
            Some(Notify {
                success: true,
                failure: true,
                delay: false
            })
        );
        assert_eq!(r[1].notify, Some(Notify::NEVER));
        assert_eq!(
            r[1].state,
            RcptState::Deferred {
                reason: "busy".into()
            }
        );
        assert_eq!(r[2].notify, None);
        assert_eq!(r[2].orcpt, Some(Orcpt::rfc822("d@y")));
        match &r[2].state {
            RcptState::Bounced { dsn, .. } => assert_eq!(*dsn, "5.1.1"),
            other => panic!("{other:?}"),
        }
        // Unchanged layouts read the same in every version.
        let meta = MessageMeta {
            state: QueueState::Hold,
            attempts: 2,
            last_attempt_unix: Some(9),
        };
        let v1 = encode_versioned(1, &meta).unwrap();
        assert_eq!(decode::<MessageMeta>(&v1).unwrap(), meta);
        let v2 = encode_versioned(2, &meta).unwrap();
        assert_eq!(decode::<MessageMeta>(&v2).unwrap(), meta);
        assert_eq!(
            decode::<MessageMeta>(&encode(&meta).unwrap()).unwrap(),
            meta
        );
    }

    #[test]
    fn a_version_2_envelope_is_read_with_its_protocol_typed() {
        let old = |protocol: &str| legacy::EnvelopeV2 {
            sender: "a@x".into(),
            recipients: vec![crate::types::Recipient::new("b@y")],
            arrival_unix: 5,
            size: 10,
            client: Some(legacy::ClientInfo {
                name: "mx.example.com".into(),
                addr: "192.0.2.1".into(),
                helo: "mx".into(),
                protocol: protocol.into(),
                sasl_username: Some("u".into()),
            }),
            ..Default::default()
        };
        for &p in ClientProtocol::ALL {
            let env: Envelope = decode(&encode_versioned(2, &old(p.name())).unwrap()).unwrap();
            let c = env.client.unwrap();
            assert_eq!(c.protocol, p);
            assert_eq!(
                (c.name.as_str(), c.addr.as_str()),
                ("mx.example.com", "192.0.2.1")
            );
            assert_eq!(
                (c.helo.as_str(), c.sasl_username.as_deref()),
                ("mx", Some("u"))
            );
            assert_eq!((env.sender.as_str(), env.size), ("a@x", 10));
            assert_eq!(env.recipients[0].address, "b@y");
        }
        // A name no Postern wrote still leaves the message readable.
        let env: Envelope = decode(&encode_versioned(2, &old("local")).unwrap()).unwrap();
        assert_eq!(env.client.unwrap().protocol, ClientProtocol::Smtp);
        // The current version keeps the typed value.
        let mut now: Envelope = decode(&encode_versioned(2, &old("ESMTPSA")).unwrap()).unwrap();
        now.client.as_mut().unwrap().protocol = ClientProtocol::Esmtps;
        assert_eq!(decode::<Envelope>(&encode(&now).unwrap()).unwrap(), now);
    }

    #[test]
    fn a_version_3_envelope_is_read_without_a_filter() {
        let old = legacy::EnvelopeV3 {
            sender: "a@x".into(),
            recipients: vec![crate::types::Recipient::new("b@y")],
            arrival_unix: 5,
            size: 10,
            client: Some(postern_envelope::ClientInfo {
                name: "mx.example.com".into(),
                addr: "192.0.2.1".into(),
                helo: "mx".into(),
                protocol: ClientProtocol::Esmtp,
                sasl_username: None,
            }),
            envid: Some("E".into()),
            ret: Some(postern_envelope::Ret::Hdrs),
            smtputf8: true,
            body_8bit: true,
        };
        let env: Envelope = decode(&encode_versioned(3, &old).unwrap()).unwrap();
        assert_eq!(env.filter, None);
        assert_eq!(
            (env.sender.as_str(), env.size, env.arrival_unix),
            ("a@x", 10, 5)
        );
        assert_eq!(env.client.as_ref().unwrap().protocol, ClientProtocol::Esmtp);
        assert_eq!(
            (env.envid.as_deref(), env.ret),
            (Some("E"), Some(postern_envelope::Ret::Hdrs))
        );
        assert!(env.smtputf8 && env.body_8bit);
        // Version 4 keeps the filter.
        let mut now = env;
        now.filter = Some("smtp:[127.0.0.1]:10025".parse().unwrap());
        assert_eq!(decode::<Envelope>(&encode(&now).unwrap()).unwrap(), now);
    }
}
