# shellcheck shell=bash disable=SC2154  # the caller sets the globals below
# Helpers for the DKIM benchmarks (scripts/bench-milter, scripts/bench-auth),
# sourced after scripts/lib/bench.sh: one RSA 2048 key for example.com
# (selector bench, the domain of smtp-source's -f sender, which it also
# writes as the From: header) made by opendkim-genkey in $work/dkim;
# signing opendkims on loopback ports; and opendkim's verifier, with the
# key as a test public key, for what arrives at the sink.
#
# The caller sets work, sizes (message sizes), sample (messages of each
# size to check), and what `send` needs.

dkim=$work/dkim
dkim_pids=()

# make_dkim_key: the key, readable by opendkim, and verify.conf.
make_dkim_key() {
  mkdir -p "$dkim"
  opendkim-genkey -b 2048 -d example.com -s bench -D "$dkim"
  chown opendkim "$dkim/bench.private"
  # The public key as a TXT record on one line, for opendkim's verifier.
  dkim_record=$(sed -n 's/[^"]*"\([^"]*\)"[^"]*/\1/gp' "$dkim/bench.txt" | tr -d '\n')
  echo "bench._domainkey.example.com $dkim_record" >"$dkim/public-keys"
  cat >"$dkim/verify.conf" <<CF
Syslog no
Mode v
TestPublicKeys $dkim/public-keys
RequireSafeKeys false
CF
}

# start_opendkim NAME PORT: a signing opendkim on 127.0.0.1:PORT (Mode s,
# relaxed/relaxed, the bench key for example.com).
start_opendkim() {
  cat >"$dkim/$1.conf" <<CF
Syslog no
Mode s
Canonicalization relaxed/relaxed
Domain example.com
Selector bench
KeyFile $dkim/bench.private
# The scratch directory is under /tmp, which others can write.
RequireSafeKeys false
Socket inet:$2@127.0.0.1
UserID opendkim
CF
  opendkim -f -x "$dkim/$1.conf" 2>"$dkim/$1.log" &
  dkim_pids+=($!)
  for _ in $(seq 50); do
    (: >"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return
    sleep 0.1
  done
  echo "bench: opendkim for $1 did not start:" >&2
  cat "$dkim/$1.log" >&2
  exit 1
}

# signed NAME PORT: sends $sample messages of each size through the MTA
# listening on PORT to a sink that keeps them; true if each is signed by
# example.com's key and opendkim verifies the signature.
signed() {
  local name=$1 port=$2 kept=$work/kept-$1 total=0 f size verdict
  mkdir -p "$kept"
  chown nobody "$kept"
  start_sink "$name-sample" -d "$kept/"
  # shellcheck disable=SC2034  # send reads size
  for size in "${sizes[@]}"; do
    send "$port" "$sample" >/dev/null 2>&1 || true
    total=$((total + sample))
  done
  wait_sink "$name-sample" $total 10 || { stop_sink; return 1; }
  stop_sink
  for f in "$kept"/*; do
    verdict=$(opendkim -x "$dkim/verify.conf" -t "$f" 2>&1 || true)
    if ! grep -q '^DKIM-Signature: ' "$f" ||
      [[ $verdict != *"verification (s=bench, d=example.com, "*") succeeded"* ]]; then
      echo "bench: $name: $f is not signed, or its signature does not verify: $verdict" >&2
      return 1
    fi
  done
  echo "$name: $total of $total sample messages carry a DKIM-Signature that verifies"
}
