//! Names that cross the wire as values and are printed only at the edge:
//! the queue a message is in, where each recipient stands, and the
//! protocol the message arrived by. Each `Display` is the exact word
//! Postfix's logs and tools use.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An enum of unit variants, each with its word: `ALL`, `name()`,
/// `from_name()`, a `Display` that prints the word and a comparison with
/// it (`protocol == "ESMTPA"`).
macro_rules! named {
    ($(#[$m:meta])* pub enum $name:ident {
        $($(#[$vm:meta])* $v:ident => $word:literal,)+
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$v => $word,)+
                }
            }

            /// The value with this [`name`](Self::name) (exact case).
            pub fn from_name(name: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.name() == name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.name() == *other
            }
        }
    };
}

named! {
    /// The queue a message is in, as `mailq` flags it and `postqueue -j`
    /// names it (`queue_name`). A message being received is in no queue
    /// yet: it is listed once it is committed, in active (the default).
    pub enum QueueName {
        #[default]
        Active => "active",
        Deferred => "deferred",
        Hold => "hold",
        Corrupt => "corrupt",
    }
}

named! {
    /// Where one recipient of a queued message stands, as `qctl show`
    /// prints it (`recipient_state:`).
    pub enum RecipientState {
        /// Not yet attempted.
        #[default]
        Pending => "pending",
        Sent => "sent",
        Bounced => "bounced",
        /// Failed temporarily at the last attempt.
        Deferred => "deferred",
    }
}

named! {
    /// The protocol a client used (RFC 3848's `with` keywords, Postfix's
    /// `protocol=` log field and `protocol_name` queue-file attribute):
    /// `SMTP` or `ESMTP`, with `S` under TLS and `A` once authenticated.
    pub enum ClientProtocol {
        #[default]
        Smtp => "SMTP",
        Smtps => "SMTPS",
        Smtpa => "SMTPA",
        Smtpsa => "SMTPSA",
        Esmtp => "ESMTP",
        Esmtps => "ESMTPS",
        Esmtpa => "ESMTPA",
        Esmtpsa => "ESMTPSA",
    }
}

impl ClientProtocol {
    /// The protocol of a session that said EHLO (`esmtp`), runs under TLS
    /// and has authenticated, or not.
    pub fn of(esmtp: bool, tls: bool, auth: bool) -> ClientProtocol {
        use ClientProtocol::*;
        match (esmtp, tls, auth) {
            (false, false, false) => Smtp,
            (false, true, false) => Smtps,
            (false, false, true) => Smtpa,
            (false, true, true) => Smtpsa,
            (true, false, false) => Esmtp,
            (true, true, false) => Esmtps,
            (true, false, true) => Esmtpa,
            (true, true, true) => Esmtpsa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_postfix_words() {
        let shown: Vec<String> = QueueName::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["active", "deferred", "hold", "corrupt"]);
        let shown: Vec<String> = RecipientState::ALL
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["pending", "sent", "bounced", "deferred"]);
        let shown: Vec<String> = ClientProtocol::ALL
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "SMTP", "SMTPS", "SMTPA", "SMTPSA", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA"
            ]
        );
    }

    #[test]
    fn protocols_follow_the_session_and_round_trip_by_name() {
        assert_eq!(ClientProtocol::of(false, false, false), "SMTP");
        assert_eq!(ClientProtocol::of(true, true, false), "ESMTPS");
        assert_eq!(ClientProtocol::of(true, false, true), "ESMTPA");
        assert_eq!(ClientProtocol::of(false, true, true), "SMTPSA");
        for &p in ClientProtocol::ALL {
            assert_eq!(ClientProtocol::from_name(p.name()), Some(p));
            assert_eq!(ClientProtocol::from_name(&p.to_string()), Some(p));
        }
        assert_eq!(ClientProtocol::from_name("esmtp"), None);
        assert_eq!(ClientProtocol::from_name("local"), None);
        for bits in 0..8u8 {
            let (e, t, a) = (bits & 4 != 0, bits & 2 != 0, bits & 1 != 0);
            let want = format!(
                "{}SMTP{}{}",
                if e { "E" } else { "" },
                if t { "S" } else { "" },
                if a { "A" } else { "" }
            );
            assert_eq!(ClientProtocol::of(e, t, a).name(), want);
        }
    }
}
