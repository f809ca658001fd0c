#!/usr/bin/python3
"""testmilter.py - a configurable milter on Debian's libmilter, for tests.

Run it with Debian's python (python3-milter), not a pyenv python:

    /usr/bin/python3 tests/milters/testmilter.py SOCKET CONFIG.json LOG.jsonl

SOCKET is libmilter's socket syntax: ``unix:/path/to/socket`` or
``inet:PORT@127.0.0.1``. The milter runs until its standard input closes
(start it with a pipe as stdin; it exits when the test process does; with
any other stdin it runs on), or
until it is killed.

CONFIG.json (read once at start) says how to negotiate and, per session,
what to answer. Every key is optional:

    {
      "actions": ["ADDHDRS", "CHGHDRS", "CHGBODY", "ADDRCPT", "ADDRCPT_PAR",
                  "DELRCPT", "CHGFROM", "QUARANTINE", "SETSYMLIST"],
                           # actions to ask for (default: all offered)
      "no": ["helo", ...], # SMFIP_NO* for these stages: the MTA skips them
      "noreply": ["header", ...],
                           # SMFIP_NR_* for these stages: the milter does
                           # not answer them (the callbacks return NOREPLY)
      "leadspace": false,  # ask for SMFIP_HDR_LEADSPC
      "rcpt_rej": false,   # ask for SMFIP_RCPT_REJ (see rejected RCPTs)
      "symlist": {"envfrom": ["{mail_addr}", "i"]},
                           # SMFIR_SETSYMLIST lists (at most 5 names each)
                           # for connect, helo, envfrom, envrcpt, data,
                           # eom, eoh
      "log_macros": ["j", "{daemon_name}", ...],
                           # macros to look up and log at each stage
                           # (default: a long list of Postfix's names)
      "profiles": {"HOSTNAME": PROFILE, "*": PROFILE}
    }

A session takes the profile named by the client host name the MTA sends
at connect (so one milter process serves many tests), else ``"*"``, else
an empty one (continue everywhere). A PROFILE:

    {
      "reply": {STAGE: ANSWER, ...},
      "rcpt": {"<addr@example>": ANSWER},   # per recipient, beats reply
      "eom_actions": [ACTION, ...],         # made at eom, in order
      "hang_seconds": 60,                   # how long "hang" sleeps
      "progress": {"count": 3, "interval": 0.5}
    }

STAGE is connect, helo, envfrom, envrcpt, data, unknown, header, eoh, body
or eom. ANSWER is "continue", "accept", "reject", "tempfail", "discard",
"skip" (body only), "hang" (sleep hang_seconds, then continue),
"progress" (send SMFIR_PROGRESS count times, interval seconds apart,
then continue), or a reply code:
{"code": "550", "xcode": "5.7.1", "text": ["line 1", "line 2", ...]}
(several lines make a multi-line reply; 4xx codes are sent as tempfail).

ACTION is one of:

    {"addheader": ["Name", "value"]}         # SMFIR_ADDHEADER
    {"insheader": ["Name", "value", INDEX]}  # SMFIR_INSHEADER
    {"chgheader": ["Name", INDEX, "value"]}  # SMFIR_CHGHEADER ("" deletes)
    {"replacebody": "new body\\r\\n"}         # SMFIR_REPLBODY
    {"chgfrom": ["<new@example>", "ESMTP args or null"]}
    {"addrcpt": ["<more@example>"]}          # SMFIR_ADDRCPT
    {"addrcpt": ["<more@example>", "NOTIFY=NEVER"]}   # SMFIR_ADDRCPT_PAR
    {"delrcpt": "<old@example>"}
    {"quarantine": "reason"}

LOG.jsonl gets one JSON object per line, flushed at once:

    {"session": N, "host": HOSTNAME or null, "event": STAGE or
     "negotiate"/"abort"/"close", "args": [...], "macros": {name: value}}

``negotiate`` carries the offered and chosen options; ``header`` carries
[name, value]; ``body`` carries [length of the chunk, text (latin-1)];
``envfrom``/``envrcpt`` carry the address and ESMTP arguments. ``host`` is
null until connect.
"""

import json
import os
import stat
import sys
import threading
import time

import Milter

STAGES = {
    # stage: (SMFIP_NO*, SMFIP_NR_*)
    "connect": (Milter.P_NOCONNECT, Milter.P_NR_CONN),
    "helo": (Milter.P_NOHELO, Milter.P_NR_HELO),
    "envfrom": (Milter.P_NOMAIL, Milter.P_NR_MAIL),
    "envrcpt": (Milter.P_NORCPT, Milter.P_NR_RCPT),
    "data": (Milter.P_NODATA, Milter.P_NR_DATA),
    "unknown": (Milter.P_NOUNKNOWN, Milter.P_NR_UNKN),
    "header": (Milter.P_NOHDRS, Milter.P_NR_HDR),
    "eoh": (Milter.P_NOEOH, Milter.P_NR_EOH),
    "body": (Milter.P_NOBODY, Milter.P_NR_BODY),
}

ACTIONS = {
    "ADDHDRS": Milter.ADDHDRS,
    "CHGHDRS": Milter.CHGHDRS,
    "CHGBODY": Milter.MODBODY,
    "ADDRCPT": Milter.ADDRCPT,
    "ADDRCPT_PAR": Milter.ADDRCPT_PAR,
    "DELRCPT": Milter.DELRCPT,
    "CHGFROM": Milter.CHGFROM,
    "QUARANTINE": Milter.QUARANTINE,
    "SETSYMLIST": Milter.SETSYMLIST,
}

MACRO_STAGES = {
    "connect": Milter.M_CONNECT,
    "helo": Milter.M_HELO,
    "envfrom": Milter.M_ENVFROM,
    "envrcpt": Milter.M_ENVRCPT,
    "data": Milter.M_DATA,
    "eom": Milter.M_EOM,
    "eoh": Milter.M_EOH,
}

DEFAULT_LOG_MACROS = [
    "j", "_", "v", "i", "{daemon_name}", "{daemon_addr}", "{client_addr}",
    "{client_name}", "{client_port}", "{tls_version}", "{cipher}",
    "{cipher_bits}", "{cert_subject}", "{cert_issuer}", "{auth_type}",
    "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
    "{mail_mailer}", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}",
]

CONFIG = {}
LOG = None
LOG_LOCK = threading.Lock()
SESSIONS = [0]


def text(b):
    if isinstance(b, bytes):
        return b.decode("latin-1")
    return b


class TestMilter(Milter.Base):
    def __init__(self):
        with LOG_LOCK:
            SESSIONS[0] += 1
            self.session = SESSIONS[0]
        self.host = None
        self.profile = {}
        self._ctx = None

    # -- helpers --------------------------------------------------------

    def log_event(self, event, args=(), macros=True):
        entry = {
            "session": self.session,
            "host": self.host,
            "event": event,
            "args": [text(a) for a in args],
            "macros": {},
        }
        if macros and self._ctx is not None:
            for name in CONFIG.get("log_macros", DEFAULT_LOG_MACROS):
                try:
                    value = self.getsymval(name)
                except Exception:
                    value = None
                if value is not None:
                    entry["macros"][name] = text(value)
        with LOG_LOCK:
            LOG.write(json.dumps(entry) + "\n")
            LOG.flush()

    def answer(self, stage, override=None):
        noreply = stage in CONFIG.get("noreply", [])
        ans = override
        if ans is None:
            ans = self.profile.get("reply", {}).get(stage, "continue")
        if ans == "hang":
            time.sleep(self.profile.get("hang_seconds", 60))
            ans = "continue"
        if ans == "progress":
            p = self.profile.get("progress", {})
            for _ in range(p.get("count", 3)):
                time.sleep(p.get("interval", 0.5))
                self.progress()
            ans = "continue"
        if isinstance(ans, dict):
            code = str(ans.get("code", "550"))
            lines = ans.get("text", ["rejected by testmilter"])
            self.setreply(code, ans.get("xcode"), *lines)
            return Milter.TEMPFAIL if code.startswith("4") else Milter.REJECT
        if noreply and ans == "continue":
            return Milter.NOREPLY
        return {
            "continue": Milter.CONTINUE,
            "accept": Milter.ACCEPT,
            "reject": Milter.REJECT,
            "tempfail": Milter.TEMPFAIL,
            "discard": Milter.DISCARD,
            "skip": Milter.SKIP,
        }[ans]

    # -- callbacks ------------------------------------------------------

    def negotiate(self, opts):
        offered_actions, offered_proto = opts[0], opts[1]
        wanted = CONFIG.get("actions")
        actions = offered_actions
        if wanted is not None:
            actions = 0
            for name in wanted:
                actions |= ACTIONS[name]
            actions &= offered_actions
        self._actions = actions
        proto = 0
        for stage in CONFIG.get("no", []):
            proto |= STAGES[stage][0]
        for stage in CONFIG.get("noreply", []):
            proto |= STAGES[stage][1]
        if offered_proto & Milter.P_SKIP:
            proto |= Milter.P_SKIP
        if CONFIG.get("leadspace"):
            proto |= Milter.P_HDR_LEADSPC
        if CONFIG.get("rcpt_rej"):
            proto |= Milter.P_RCPT_REJ
        proto &= offered_proto
        for stage, names in CONFIG.get("symlist", {}).items():
            # pymilter 1.0.5's setsymlist() passes bytes where its C
            # module wants str: call the context directly.
            self._ctx.setsymlist(MACRO_STAGES[stage], " ".join(names))
        opts[0] = actions
        opts[1] = self._protocol = proto
        opts[2] = 0
        opts[3] = 0
        self.log_event("negotiate", [str(offered_actions), str(offered_proto),
                                     str(actions), str(proto)], macros=False)
        return Milter.CONTINUE

    def connect(self, hostname, family, hostaddr):
        self.host = hostname
        profiles = CONFIG.get("profiles", {})
        self.profile = profiles.get(hostname, profiles.get("*", {}))
        fam = {1: "unix", 2: "inet", 10: "inet6"}.get(family, str(family))
        self.log_event("connect", [hostname, fam, str(hostaddr)])
        return self.answer("connect")

    def hello(self, heloname):
        self.log_event("helo", [heloname])
        return self.answer("helo")

    def envfrom(self, f, *params):
        self.log_event("envfrom", [f] + list(params))
        return self.answer("envfrom")

    def envrcpt(self, to, *params):
        self.log_event("envrcpt", [to] + list(params))
        return self.answer("envrcpt", self.profile.get("rcpt", {}).get(to))

    def data(self):
        self.log_event("data")
        return self.answer("data")

    def unknown(self, cmd):
        self.log_event("unknown", [cmd])
        return self.answer("unknown")

    def header(self, name, value):
        self.log_event("header", [name, value])
        return self.answer("header")

    def eoh(self):
        self.log_event("eoh")
        return self.answer("eoh")

    def body(self, chunk):
        self.log_event("body", [str(len(chunk)), chunk], macros=False)
        return self.answer("body")

    def eom(self):
        self.log_event("eom")
        for action in self.profile.get("eom_actions", []):
            (kind, arg), = action.items()
            if kind == "addheader":
                self.addheader(arg[0], arg[1])
            elif kind == "insheader":
                self.addheader(arg[0], arg[1], arg[2])
            elif kind == "chgheader":
                self.chgheader(arg[0], arg[1], arg[2])
            elif kind == "replacebody":
                self.replacebody(arg.encode("latin-1"))
            elif kind == "chgfrom":
                self.chgfrom(arg[0], arg[1] if len(arg) > 1 else None)
            elif kind == "addrcpt":
                self.addrcpt(arg[0], arg[1] if len(arg) > 1 else None)
            elif kind == "delrcpt":
                self.delrcpt(arg)
            elif kind == "quarantine":
                self.quarantine(arg)
            else:
                raise ValueError("unknown eom action " + kind)
        return self.answer("eom")

    def abort(self):
        self.log_event("abort", macros=False)
        return Milter.CONTINUE

    def close(self):
        self.log_event("close", macros=False)
        return Milter.CONTINUE


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    global CONFIG, LOG
    socket, config, log = sys.argv[1:4]
    with open(config) as f:
        CONFIG = json.load(f)
    LOG = open(log, "a")
    # Only a pipe says when the test is gone; under the peers harness's
    # guard stdin is /dev/null and the guard ends the milter instead.
    if stat.S_ISFIFO(os.fstat(0).st_mode):
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    Milter.factory = TestMilter
    Milter.runmilter("testmilter", socket, timeout=600)


if __name__ == "__main__":
    main()
