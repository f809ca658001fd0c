//! NAME
//!   smtpd - Postern SMTP server
//!
//! SYNOPSIS
//!   smtpd [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   smtpd accepts SMTP sessions on the sockets of its service (`smtp`,
//!   `submission`, `smtps`), inherited from the master, and hands the mail
//!   it accepts to qmgr over `$queue_directory/private/qmgr`. Many
//!   sessions run in one process; the master starts `process_limit` of
//!   them. Each session reads its parameters when it starts, so a reload
//!   (SIGHUP) applies to the next session and never to one in progress.
//!
//!   The session speaks SMTP and ESMTP (RFC 5321): HELO, EHLO, MAIL, RCPT,
//!   DATA, BDAT, RSET, NOOP, QUIT, VRFY, ETRN, STARTTLS, AUTH. EHLO
//!   announces PIPELINING, SIZE, VRFY (only when enabled), ETRN, STARTTLS
//!   and AUTH (when configured, see below), ENHANCEDSTATUSCODES, 8BITMIME,
//!   DSN, SMTPUTF8 and CHUNKING. Replies and their enhanced status codes
//!   are Postfix's, word for word, so that scripts and people who know
//!   Postfix read them unchanged.
//!
//!   Commands may be pipelined: they are read as they come and the replies
//!   are written together once the client has nothing more buffered. A
//!   client that sends ahead where RFC 2920 says it must wait (after EHLO,
//!   DATA, VRFY, NOOP, ETRN, or at all after HELO) gets `554 5.5.0 Error:
//!   SMTP protocol synchronization` and is disconnected, as Postfix 3.9
//!   does with smtpd_forbid_unauth_pipelining = yes.
//!
//!   At RCPT the access policy (smtpd_relay_restrictions, then
//!   smtpd_recipient_restrictions; with smtpd_delay_reject = no also the
//!   client, HELO and sender lists at their own stage) decides; a refused
//!   recipient gets the policy's reply and is logged as Postfix does.
//!
//!   At the first DATA or BDAT, smtpd asks qmgr for a queue ID, then
//!   streams the message to it in chunks as it arrives: our Received
//!   header first, then the content, with Message-ID and Date added at the
//!   end of the header section when the client sent none. `250 2.0.0 Ok:
//!   queued as ID` is said only after qmgr reports the message on stable
//!   storage. A message that is too large, has too many Received headers
//!   (hopcount_limit), or that qmgr cannot keep, is read to its end and
//!   then refused; qmgr drops what it got.
//!
//!   TLS (RFC 3207): with smtpd_tls_security_level = may, EHLO offers
//!   STARTTLS (only while the session is in plaintext); `220 2.0.0 Ready
//!   to start TLS` is followed by the handshake, after which the session
//!   starts over: the client must send EHLO again, and STARTTLS is no
//!   longer offered. Whatever the client sent after the STARTTLS line and
//!   before the handshake is thrown away unread (CVE-2011-0411). With
//!   `encrypt`, every command but HELO, EHLO, STARTTLS, RSET, NOOP and QUIT
//!   is answered `530 5.7.0 Must issue a STARTTLS command first`. With
//!   smtpd_tls_wrappermode = yes (a per-service option, for SMTPS on 465)
//!   the handshake comes right after accept, before the greeting. Session
//!   tickets are sealed with keys from tlsmgr(8), so a client resumes its
//!   session with any smtpd process of any service, and across smtpd
//!   restarts. Under TLS the protocol is ESMTPS (SMTPS after HELO) in the
//!   Received header, the logs and the envelope; the Received header also
//!   gets Postfix's `(using TLSv1.3 with cipher ... (256/256 bits))`
//!   clause.
//!
//!   SMTP AUTH (RFC 4954): with smtpd_sasl_auth_enable = yes, EHLO offers
//!   `AUTH PLAIN LOGIN`, plus CRAM-MD5 when the user table holds a
//!   recoverable secret. Users and password hashes come from the table
//!   named by smtpd_sasl_users, one `username hash` line each; the hash is
//!   argon2 (`$argon2id$...`), SHA-512 or SHA-256 crypt (`$6$...`,
//!   `$5$...`, as made by `openssl passwd -6`), or `{plain}secret`. Only
//!   `{plain}` entries can log in with CRAM-MD5, which needs the secret
//!   itself; since such an entry is readable by anyone who reads the table,
//!   CRAM-MD5 stays off until the administrator writes one. A login is
//!   answered `235 2.7.0 Authentication successful`, a failed one `535
//!   5.7.8 Error: authentication failed: authentication failure` after a
//!   delay that doubles with each failure in a row from the same client
//!   address (0.5s, 1s, 2s, ... at most 10s; remembered per process for 15
//!   minutes). After AUTH the protocol is ESMTPA (ESMTPSA under TLS);
//!   permit_sasl_authenticated then lets the client relay, and
//!   reject_sender_login_mismatch (with smtpd_sender_login_maps) keeps it
//!   to its own sender addresses. MAIL's `AUTH=` parameter is accepted and
//!   ignored.
//!
//!   Access table actions (access(5)): HOLD queues the message on hold,
//!   DISCARD accepts and drops it, FILTER transport:destination sends it
//!   through that after-queue content filter, REDIRECT user@domain
//!   delivers it there instead of to its recipients (and overrides
//!   FILTER), BCC user@domain adds a recipient that is never reported on
//!   (NOTIFY=NEVER), PREPEND puts a header above our Received header, and
//!   WARN and INFO only log. Each is logged as Postfix's log_whatsup does:
//!   `NOQUEUE: hold: RCPT from NAME[ADDR]: <rcpt>: Recipient address
//!   triggers HOLD action; from=<s> to=<r> proto=ESMTP helo=<h>`.
//!
//!   Content inspection (header_checks(5), as Postfix's cleanup does it):
//!   header_checks, mime_header_checks, nested_header_checks and
//!   body_checks run over the message as it streams in, our Received
//!   header included, with every action: REJECT (refused at end of data,
//!   `550 5.7.1 text`), WARN, INFO, HOLD, DISCARD, FILTER, REDIRECT, BCC,
//!   PREPEND, REPLACE, IGNORE, STRIP, PASS, DUNNO and OK, logged as
//!   cleanup logs them (`ID: warning: header Subject: ... from
//!   NAME[ADDR]; from=<s> to=<r> proto=ESMTP helo=<h>: text`). A broken
//!   pattern stops the master at start with the table's file and line.
//!
//!   Milters (MILTER_README): each session connects to smtpd_milters, in
//!   order, and tells them of the client, HELO, MAIL, each accepted RCPT
//!   and DATA as they happen; a refusal (reject, tempfail, a custom and
//!   maybe multi-line reply) answers that command, and at connect or HELO
//!   every later one. The content goes to them at the end of the message
//!   with our Received header hidden, and their answer decides: reject or
//!   reply refuses the message, discard drops it, quarantine queues it on
//!   hold, and their modifications (add, insert, change and delete
//!   headers, replace the body, change the sender, add and delete
//!   recipients) are made before the message goes to qmgr. A filter that
//!   cannot be reached, times out or breaks the protocol stands for its
//!   milter_default_action for the rest of the session, logged once
//!   (`warning: milter inet:127.0.0.1:8891: can't read SMFIC_BODYEOB reply
//!   packet header: Connection timed out`). Refusals are logged as
//!   `milter-reject`, `milter-discard` and `milter-hold`.
//!
//!   DKIM signing (RFC 6376; opendkim's SigningTable and KeyTable
//!   conventions): mail from mynetworks and authenticated clients whose
//!   From: address dkim_signing_table maps to a key of dkim_key_table is
//!   signed at the end of the message, after the milters (RSA-SHA256 or
//!   Ed25519-SHA256, relaxed/relaxed unless dkim_canonicalization says
//!   otherwise), and logged as opendkim logs it (`ID: DKIM-Signature field
//!   added (s=SELECTOR, d=DOMAIN)`). The keys are read at start: a missing
//!   or unreadable one stops the master with its name. Such a message is
//!   kept whole in memory until it is signed, as for milters.
//!
//!   Message authentication (Postern; RFC 7208, 6376, 7489, 8617, 8601):
//!   mail from clients outside mynetworks that did not authenticate is
//!   checked with smtpd_message_authentication's methods, with no opendkim,
//!   opendmarc or policyd-spf beside it. SPF of the HELO and MAIL FROM
//!   identities starts when MAIL FROM is accepted, and RCPT waits for it;
//!   at the end of the message every DKIM signature (up to 10), the ARC
//!   chain and DMARC are checked. Authentication-Results fields that
//!   claim our authserv-id ($myhostname) are removed (from all mail from
//!   outside mynetworks, checked or not), and the results go
//!   into one Authentication-Results field below our Received and into
//!   the log (`ID: Authentication-Results: HOST; spf=pass
//!   smtp.mailfrom=..., dkim=pass header.d=..., dmarc=pass ...,
//!   arc=none`), before the milters see the message. A check cut off by
//!   smtpd_message_authentication_timeout is a temperror, never a hang.
//!   An SPF fail (`-all` matched, either identity) is refused at RCPT or
//!   at the end of DATA as smtpd_spf_fail_action says (`550 5.7.23
//!   <alice@example.com>: Sender address rejected: SPF fail - example.com
//!   does not designate 192.0.2.1 as permitted sender`), and
//!   reject_spf_fail does the same inside smtpd_*_restrictions (from MAIL
//!   on: with smtpd_delay_reject = no the sender restrictions wait for
//!   SPF; in the client and HELO restrictions evaluated at connect and
//!   HELO there is no result yet, and it does nothing). A DMARC failure
//!   under p=reject or p=quarantine is refused (`550 5.7.1 rejected by
//!   DMARC policy for example.com`), held or only tagged as
//!   smtpd_dmarc_reject_action and smtpd_dmarc_quarantine_action say;
//!   both default to tag. Checked mail that a virtual alias forwards to
//!   another domain is sealed with ARC with arc_sealing_key (local(8)'s
//!   aliases and .forward files seal in local-delivery). Such a message is
//!   kept whole in memory until it is checked.
//!
//!   After-queue content filter (FILTER_README): content_filter (usually
//!   set per service) names the transport:destination that every message
//!   received here goes to first; qmgr sends it there, and the filter
//!   hands it back through a second smtpd service whose content_filter is
//!   empty. receive_override_options leaves out unknown-recipient checks,
//!   address mappings (canonical and virtual aliases, done after the
//!   filter instead), header and body checks, or milters for a service.
//!
//!   The end of DATA is `<CR><LF>.<CR><LF>` only: a bare LF never ends the
//!   message, so a second message cannot be smuggled inside the first
//!   (CVE-2023-51764). What a bare LF means otherwise is
//!   smtpd_forbid_bare_newline.
//!
//! DIFFERENCES FROM POSTFIX
//!   VRFY is off unless `disable_vrfy_command = no` is set explicitly;
//!   Postfix answers VRFY by default. Address harvesting is the only use
//!   VRFY sees on the Internet.
//!
//!   The client's name (smtpd_peername_lookup = yes, as in Postfix) is its
//!   PTR name confirmed by its A or AAAA records, asked of dns_servers
//!   within 10 s for both; only a confirmed name appears in the log,
//!   Received and the milter macros; otherwise it is `unknown`
//!   (`warning: hostname NAME does not resolve to address ADDR`), and
//!   reject_unknown_client_hostname answers 450 while DNS fails,
//!   unknown_client_reject_code otherwise. Loopback addresses are
//!   `localhost` without a query (RFC 6761), where Postfix asks
//!   /etc/hosts.
//!
//!   DNS lists (reject_rbl_client, reject_rhsbl_client,
//!   reject_rhsbl_reverse_client, reject_rhsbl_helo, reject_rhsbl_sender,
//!   reject_rhsbl_recipient, permit_dnswl_client, permit_rhswl_client)
//!   are asked of dns_servers through the resolver's cache, which keeps
//!   answers for their TTLs; Postfix keeps the last 100 answers of each
//!   process, failures included, for the life of the process. Each
//!   query is bounded at 10 s. A `domain=filter` that does not parse
//!   refuses the configuration at load (Postfix stops smtpd the first
//!   time the filter is used).
//!
//!   A command line longer than line_length_limit is refused with `500
//!   5.5.2 Error: line too long` instead of being cut and then obeyed.
//!
//!   Message-ID and Date are added when missing (Postfix's cleanup does
//!   this); beyond header_size_limit the header section is not examined
//!   and nothing is added. Dates are in local time with the zone's offset,
//!   as Postfix writes them.
//!
//!   The queue ID is assigned by qmgr at DATA or BDAT (Postfix opens its
//!   queue file at the first accepted RCPT), so `ID: client=NAME[ADDR]`
//!   is logged then.
//!
//!   The certificate and key files are read after the switch to
//!   mail_owner (Postfix reads them as root), so they must be readable
//!   by mail_owner. A missing, unreadable or mismatched file is fatal at
//!   start, with the file named, and the master throttles the service; on
//!   reload (SIGHUP) such a file is logged as an error and the running
//!   certificates stay in use.
//!
//!   The Received header notes the TLS protocol and cipher unless
//!   smtpd_tls_received_header is set to `no` explicitly (Postfix adds the
//!   clause only when it is set to yes).
//!
//!   AUTH before TLS under smtpd_tls_auth_only is answered `538 5.7.11
//!   Encryption required for requested authentication mechanism` (RFC 4954
//!   section 6; Postfix answers `504 5.5.4` with the same text).
//!   smtpd_tls_security_level = encrypt implies smtpd_tls_auth_only.
//!
//!   SASL is built in: smtpd_sasl_type and smtpd_sasl_path are not used,
//!   and the users come from smtpd_sasl_users rather than Cyrus or
//!   Dovecot. `noanonymous` is always in force (there is no ANONYMOUS
//!   mechanism); `noplaintext` hides PLAIN and LOGIN. Acting for another
//!   user (a PLAIN authorization identity different from the login) is
//!   refused.
//!
//!   Client certificates are never requested (smtpd_tls_ask_ccert,
//!   smtpd_tls_req_ccert and permit_tls_clientcerts are not supported).
//!
//!   While milters are in use, a message is kept whole in smtpd's memory
//!   until it has been judged (Postfix's cleanup keeps it in the queue
//!   file and edits that); message_size_limit bounds it. Every filter
//!   sees the message as received, not with the edits of the filters
//!   before it. The milter macro `i` exists from DATA on (Postern's queue
//!   ID is assigned there). milter_header_checks, milter_macro_defaults
//!   and smtpd_milter_maps are not supported.
//!
//! SECURITY
//!   smtpd talks to anyone on the network. It runs as mail_owner, holds no
//!   mail of its own and keeps at most one chunk of a message in memory
//!   (the whole message while milters judge it).
//!   Every read and write has the smtpd_timeout deadline, the TLS handshake
//!   too; command lines are bounded by line_length_limit; a client making
//!   too many errors is slowed down and then disconnected. Passwords are
//!   checked off the async threads (argon2 is slow on purpose), and
//!   password guessing is slowed down per client address.
//!
//! STANDARDS
//!   RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 1985 (ETRN), RFC 2034
//!   (enhanced status codes), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING),
//!   RFC 3461 (DSN), RFC 5322 (message format), RFC 6152 (8BITMIME),
//!   RFC 6531 (SMTPUTF8), RFC 3207 (STARTTLS), RFC 8446 and 5246 (TLS
//!   1.3 and 1.2), RFC 4954 (AUTH), RFC 4616 (PLAIN), RFC 2195 (CRAM-MD5),
//!   RFC 3848 (ESMTPS/ESMTPA/ESMTPSA).
//!
//! DIAGNOSTICS
//!   Log lines follow Postfix: `connect from NAME[ADDR]`, `ID:
//!   client=NAME[ADDR]`, `NOQUEUE: reject: RCPT from NAME[ADDR]: 554 5.7.1
//!   <rcpt>: Relay access denied; from=<s> to=<r> proto=ESMTP helo=<h>`,
//!   `timeout after CMD from ...`, `lost connection after CMD from ...`,
//!   `too many errors after CMD from ...`, and `disconnect from NAME[ADDR]
//!   ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5` (`ok/total` where some
//!   failed). Problems reaching qmgr are logged as warnings and the client
//!   gets `451 4.3.0 Error: queue file write error`. A table whose file
//!   is missing is opened as a surrogate, as in Postfix (`warning:
//!   hash:/etc/aliases is unavailable. open database /etc/aliases: No such
//!   file or directory`, once): only the checks that consult it answer
//!   `451 4.3.5 Server configuration error`, and the file is used once it
//!   is there. An access policy that cannot be built (a table file with a
//!   syntax error) answers 451 4.3.5 to every recipient and is built again
//!   every 5 seconds (Postfix's smtpd would exit and be restarted by the
//!   master).
//!
//!   TLS: `Anonymous TLS connection established from NAME[ADDR]: TLSv1.3
//!   with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`; a failed
//!   handshake logs `SSL_accept error from NAME[ADDR]: reason` and `lost
//!   connection after STARTTLS from ...`. Certificate problems at start:
//!   `fatal: private key in KEY does not match the certificate in CERT`,
//!   `fatal: cannot read FILE: ...`.
//!
//!   AUTH: `ID: client=NAME[ADDR], sasl_method=PLAIN, sasl_username=alice`
//!   for mail from an authenticated client, and `warning: NAME[ADDR]: SASL
//!   PLAIN authentication failed: authentication failure,
//!   sasl_username=alice` for each failure. An unreadable user table is
//!   logged as an error and AUTH is answered `454 4.7.0 Temporary
//!   authentication failure`.
//!
//! CONFIGURATION PARAMETERS
//!   Greeting and identity
//!     smtpd_banner          text after `220 ` ($myhostname ESMTP $mail_name)
//!     myhostname            in EHLO, Received, Message-ID and 421 replies
//!     mail_name             in the Received header (Postern)
//!     myorigin              domain added to unqualified envelope addresses
//!
//!   Resource and rate controls
//!     smtpd_timeout         limit for each read and write (300s)
//!     message_size_limit    largest message in bytes, 0 for none (10240000)
//!     smtpd_recipient_limit recipients per message (1000)
//!     smtpd_recipient_overshoot_limit  excess RCPTs before they count as
//!                           errors (1000)
//!     line_length_limit     longest command line (2048)
//!     header_size_limit     header bytes examined (102400)
//!     hopcount_limit        Received headers before `554 5.4.0` (50)
//!     smtpd_max_sessions    sessions per process (Postern; 1000)
//!     drain_timeout         how long sessions may finish after SIGTERM
//!
//!   Tarpit controls
//!     smtpd_soft_error_limit  errors before each reply is delayed (10)
//!     smtpd_error_sleep_time  that delay (1s)
//!     smtpd_hard_error_limit  errors before the session ends (20)
//!     smtpd_junk_command_limit  NOOP/RSET/VRFY/ETRN/HELO before they count
//!                           as errors (100)
//!
//!   Protocol controls
//!     smtpd_helo_required   MAIL and ETRN need HELO/EHLO first (no)
//!     smtpd_forbid_unauth_pipelining  disconnect clients that send ahead
//!                           when they must wait (yes)
//!     disable_vrfy_command  see DIFFERENCES (VRFY off unless set to no)
//!     smtpd_forbid_bare_newline  normalize (default): a bare LF ends a
//!                           line; reject: answer
//!                           smtpd_forbid_bare_newline_reject_code (521) and
//!                           disconnect; no: keep it as is
//!
//!   Access policy
//!     smtpd_delay_reject, smtpd_client_restrictions,
//!     smtpd_helo_restrictions, smtpd_sender_restrictions,
//!     smtpd_relay_restrictions, smtpd_recipient_restrictions,
//!     smtpd_data_restrictions, mynetworks
//!     mydestination, relay_domains, virtual_alias_domains,
//!     virtual_mailbox_domains  address classes, decided by postern-routing
//!                           as qmgr decides them (names, .parent,
//!                           !negation, type:table, /file/name)
//!     smtpd_sender_login_maps  sender address (or @domain) to the logins
//!                           that may use it, for
//!                           reject_sender_login_mismatch and its
//!                           authenticated/unauthenticated/known variants
//!
//!   TLS
//!     smtpd_tls_security_level  none (default), may, or encrypt
//!     smtpd_tls_cert_file, smtpd_tls_key_file  PEM certificate chain and
//!                           private key (RSA, ECDSA or Ed25519); the key
//!                           file defaults to the certificate file
//!     smtpd_tls_chain_files  key-and-chain files, one per algorithm,
//!                           instead of the two above
//!     smtpd_tls_protocols, smtpd_tls_mandatory_protocols  narrow TLSv1.2
//!                           and TLSv1.3 down (the latter with encrypt)
//!     smtpd_tls_wrappermode  TLS from the start (SMTPS); set it per
//!                           service
//!     smtpd_tls_auth_only   AUTH only under TLS (no)
//!     smtpd_tls_received_header  the TLS clause in Received (see
//!                           DIFFERENCES)
//!     smtpd_tls_loglevel    1 (default): log the summary of each
//!                           handshake; 0: do not (2 to 4 are refused)
//!     smtpd_tls_session_cache_timeout  the lifetime of session tickets
//!                           (3600s; tlsmgr rotates the keys that often)
//!                           and of cached sessions; 0 turns the cache off
//!     smtpd_tls_session_cache_database  when set, sessions are also
//!                           cached by ID, for TLS 1.2 clients that take
//!                           no ticket (empty: tickets only, as Postfix).
//!                           The cache lives in each smtpd process's
//!                           memory, at most 10000 sessions; the named
//!                           file is not written (Postfix's tlsmgr empties
//!                           it at each start, so neither keeps sessions
//!                           across a restart)
//!
//!   Content inspection and filters
//!     header_checks, mime_header_checks, nested_header_checks,
//!     body_checks           regexp:/pcre: tables (header_checks(5))
//!     body_checks_size_limit  bytes of each body part inspected (51200)
//!     disable_mime_input_processing  treat all after the headers as body
//!     mime_nesting_limit, mime_boundary_length_limit
//!     smtpd_milters         filters for mail received here, in order
//!                           (inet:host:port, unix:/path, or Postfix's
//!                           `{ inet:host:port, default_action=accept,
//!                           ... }` form)
//!     milter_default_action  accept, reject, tempfail (default) or
//!                           quarantine, for a filter that fails
//!     milter_protocol       2, 3, 4 or 6 (default)
//!     milter_connect_timeout, milter_command_timeout,
//!     milter_content_timeout  30s, 30s, 300s
//!     milter_connect_macros, milter_helo_macros, milter_mail_macros,
//!     milter_rcpt_macros, milter_data_macros,
//!     milter_end_of_header_macros, milter_end_of_data_macros,
//!     milter_unknown_command_macros, milter_macro_daemon_name,
//!     milter_macro_v        the macros sent, Postfix's defaults
//!     content_filter        transport:destination for queued mail
//!     receive_override_options  no_unknown_recipient_checks,
//!                           no_address_mappings, no_header_body_checks,
//!                           no_milters
//!
//!   DKIM signing (Postern)
//!     dkim_signing_table    From: address, *@domain, @domain or domain to
//!                           a key name (regexp:/pcre: for wildcards)
//!     dkim_key_table        key name to domain:selector:/path/key.pem
//!     dkim_canonicalization  relaxed/relaxed
//!     dkim_signed_headers   the headers signed (opendkim's list; From
//!                           always)
//!
//!   Message authentication (Postern)
//!     smtpd_message_authentication  spf, dkim, dmarc, arc: the checks of
//!                           mail from outside; empty: none (dmarc needs
//!                           spf and dkim)
//!     smtpd_message_authentication_timeout  10s, the bound on each check
//!     smtpd_spf_fail_action  tag (default), reject (at RCPT) or
//!                           reject_at_data
//!     smtpd_dmarc_reject_action, smtpd_dmarc_quarantine_action  tag
//!                           (default), hold or reject: what a DMARC
//!                           failure gets under p=reject, p=quarantine
//!     arc_sealing_key       the dkim_key_table key (RSA) that seals
//!                           forwarded mail; empty (default): none
//!     dns_servers           the resolvers asked; empty: /etc/resolv.conf
//!
//!   Client names
//!     smtpd_peername_lookup  look each client's name up (yes)
//!     unknown_client_reject_code  reject_unknown_client_hostname and
//!                           reject_unknown_reverse_client_hostname when
//!                           the lookup did not fail temporarily (450)
//!
//!   DNS lists
//!     default_rbl_reply     the reply to a listed name: `$rbl_code
//!                           Service unavailable; $rbl_class [$rbl_what]
//!                           blocked using $rbl_domain${rbl_reason?;
//!                           $rbl_reason}` (the TXT record)
//!     rbl_reply_maps        templates by list, as written (`domain` or
//!                           `domain=filter`)
//!     maps_rbl_reject_code  $rbl_code (554)
//!
//!   SASL authentication
//!     smtpd_sasl_auth_enable  offer AUTH (no)
//!     smtpd_sasl_users      the user table (Postern): `username hash`
//!     smtpd_sasl_local_domain  the realm appended to login names given
//!                           without one (`alice` is looked up and logged
//!                           as `alice@REALM`); empty (default): none
//!     smtpd_sasl_security_options  noanonymous (always), noplaintext;
//!                           smtpd_sasl_tls_security_options under TLS
//!
//! FILES
//!   $queue_directory/private/qmgr   where messages are handed over
//!   $queue_directory/private/tlsmgr  where session ticket keys come from
//!
//! SEE ALSO
//!   master(8), qmgr(8), tlsmgr(8), postconf(5), access(5),
//!   header_checks(5), MILTER_README, FILTER_README
//!
//! # Layout
//!
//! - `session`: the state machine, I/O, counting and logging.
//! - `ehlo`: HELO/EHLO, VRFY, ETRN. `mail`: MAIL, RCPT. `data`: DATA, BDAT.
//! - `message`: the outgoing content (Received, header scan, chunks).
//! - `queue`: the qmgr client behind the `Queue` trait.
//! - `tls`: STARTTLS, wrapper mode and the stream that changes under the
//!   session. `auth`: AUTH, the user table and the failure tarpit.
//! - `settings`: the parameters of one session. `policy`: access policy.
//! - `actions`: what access tables, checks and milters decided for the
//!   message, applied when it is queued. `milter`: the milter events of a
//!   session and the filters' changes. `verify`: the inbound checks and
//!   ARC sealing.

mod actions;
mod auth;
mod data;
mod ehlo;
mod mail;
mod message;
mod milter;
mod peername;
mod policy;
mod queue;
mod session;
mod settings;
mod tls;
mod verify;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postern_config::Params;
use postern_daemon::status::StatusSender;
use postern_daemon::{Context, Peer, serve_sessions};
use postern_tls::{TicketKeys, TlsmgrClient};
use rustls::ServerConfig;

use crate::queue::Qmgr;
use crate::session::{Client, Session};
use crate::settings::Settings;

/// What smtpd builds from one configuration: the settings (with the
/// compiled policy) and the TLS configuration, or why the first
/// configuration gave none (fatal at start).
#[derive(Clone)]
struct Built {
    settings: Arc<Settings>,
    tls: Result<Option<Arc<ServerConfig>>, Arc<postern_tls::TlsError>>,
}

/// How long the first fetch of ticket keys may hold up the start.
const FIRST_KEYS_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the service needs a certificate: STARTTLS offered or required,
/// or wrapper mode.
fn tls_wanted(params: &Params) -> bool {
    tls::Level::from_params(params) != tls::Level::None || params.bool("smtpd_tls_wrappermode")
}

/// The TLS state shared by every session of the process: the ticket keys
/// (from tlsmgr, so any smtpd process resumes any other's sessions) and
/// what is needed to rebuild the server configuration on reload.
#[derive(Debug)]
struct TlsState {
    tickets: Arc<TicketKeys>,
    tlsmgr: Arc<TlsmgrClient>,
    refreshing: AtomicBool,
    status: StatusSender,
}

impl TlsState {
    /// Builds the server configuration for `params`, publishes its
    /// certificates to `qctl status`, and keeps ticket keys coming.
    fn build(&self, params: &Params) -> Result<Arc<ServerConfig>, postern_tls::TlsError> {
        let tls = postern_tls::server_config_from_params(params, Some(self.tickets.clone()))?;
        self.status.certificates(tls.certificates.clone());
        if !self.refreshing.swap(true, Ordering::Relaxed) {
            postern_tls::spawn_ticket_refresh(self.tlsmgr.clone(), self.tickets.clone());
        }
        Ok(tls.config)
    }
}

fn main() -> ExitCode {
    postern_daemon::run("smtpd", serve)
}

async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let params = ctx.params();
    let max = params.int("smtpd_max_sessions").max(1) as usize;
    let drain = params.time("drain_timeout");
    let lifetime = params.time("smtpd_tls_session_cache_timeout").as_secs();
    let state = Arc::new(TlsState {
        tickets: Arc::new(TicketKeys::new(lifetime.min(u64::from(u32::MAX)) as u32)),
        tlsmgr: Arc::new(TlsmgrClient::from_params(&params)),
        refreshing: AtomicBool::new(false),
        status: ctx.status.clone(),
    });
    // Settings (with the compiled policy) and the TLS configuration are
    // built once per configuration, not once per session; a policy that
    // failed for want of a table file is built again now and then, as the
    // file may be there now.
    let built = Arc::new(
        ctx.configured({
            let state = state.clone();
            move |params, previous: Option<&Built>| Built {
                settings: Arc::new(Settings::from_params(params)),
                tls: match previous {
                    None if tls_wanted(params) => state.build(params).map(Some).map_err(Arc::new),
                    None => Ok(None),
                    Some(previous) => Ok(reload_tls(
                        &state,
                        params,
                        previous.tls.clone().ok().flatten(),
                    )),
                },
            }
        })
        .broken_when(|b| {
            let s = &b.settings;
            s.policy.is_err() || s.content.is_err() || s.dkim.is_err()
        }),
    );
    // Certificates are read at start: a missing, unreadable or mismatched
    // file is fatal here, with its name, rather than a failed handshake
    // later. The first keys are fetched before the first client, so its
    // session can be resumed by any process.
    if built.get().tls?.is_some() {
        let fetch = postern_tls::tlsmgr_client::refresh_ticket_keys(&state.tlsmgr, &state.tickets);
        match tokio::time::timeout(FIRST_KEYS_TIMEOUT, fetch).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cannot get session ticket keys yet: {e}"),
            Err(_) => tracing::warn!("cannot get session ticket keys yet: tlsmgr does not answer"),
        }
    }
    serve_sessions(&mut ctx, max, drain, move |stream, peer, shutdown| {
        let Built { settings, tls } = built.get();
        let client = match peer {
            Peer::Inet { remote, local } => Client {
                name: "unknown".to_string(),
                name_status: peername::NameStatus::Permanent,
                reverse_name: "unknown".to_string(),
                reverse_status: peername::NameStatus::Permanent,
                addr: remote.ip().to_canonical(),
                port: remote.port(),
                local: Some(local),
            },
            Peer::Unix => Client {
                name: "localhost".to_string(),
                name_status: peername::NameStatus::Ok,
                reverse_name: "localhost".to_string(),
                reverse_status: peername::NameStatus::Ok,
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 0,
                local: None,
            },
        };
        let queue = Qmgr::new(settings.qmgr_socket.clone());
        Session::new(stream, client, settings, queue, Some(shutdown))
            .with_tls(tls.ok().flatten())
            .run()
    })
    .await;
    Ok(())
}

/// The TLS configuration after a reload (SIGHUP): new sessions use the
/// new certificates; if they cannot be loaded, the running ones stay.
fn reload_tls(
    state: &TlsState,
    params: &Params,
    previous: Option<Arc<ServerConfig>>,
) -> Option<Arc<ServerConfig>> {
    if !tls_wanted(params) {
        return None;
    }
    match state.build(params) {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::error!("reload: {e}; keeping the previous TLS configuration");
            previous
        }
    }
}
