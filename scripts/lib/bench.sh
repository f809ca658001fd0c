# shellcheck shell=bash disable=SC2154  # the caller sets the globals below
# Helpers for scripts/bench*: the smtp-sink destination, the smtp-source
# load, Postern run from a generated master.toml in a scratch directory,
# and medians. Sourced after scripts/lib/peer-postfix.sh.
#
# The caller sets: work (the scratch directory, mode 755), sink_port,
# postern_port; for `rate` also mode (accept or e2e), messages, size and
# sessions; optionally source_file (smtp-source -F: that message instead
# of a generated one) and postern_mynetworks (default 127.0.0.0/8). Postern's binaries are taken from ${CARGO_TARGET_DIR:-target}/release.

bin=${CARGO_TARGET_DIR:-target}/release

# cleanup: stop everything a benchmark started (for `trap cleanup EXIT`).
cleanup() {
  stop_postfix "$work/postfix"
  if [ -n "${postern_pid:-}" ]; then kill "$postern_pid" 2>/dev/null || true; fi
  if [ -n "${sink_pid:-}" ]; then kill "$sink_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}

# start_sink NAME [SMTP-SINK-OPTION...]: a fresh sink on 127.0.0.1:sink_port;
# with -c it keeps a running count in $work/sink-NAME.out.
start_sink() {
  local name=$1
  shift
  smtp-sink -u nobody -c "$@" 127.0.0.1:"$sink_port" 2000 >"$work/sink-$name.out" &
  sink_pid=$!
  sleep 0.3
}
stop_sink() {
  kill "$sink_pid" 2>/dev/null || true
  wait "$sink_pid" 2>/dev/null || true
  sink_pid=
}
# sink_count NAME: messages the sink has counted so far (0 before any).
sink_count() {
  { tr '\r' '\n' <"$work/sink-$1.out" | grep -o 'mesg=[0-9]*' || echo mesg=0; } | tail -1 | cut -d= -f2
}

# wait_sink NAME COUNT [SECONDS]: until the sink has COUNT messages; fails
# when none has come for SECONDS (default 60).
wait_sink() {
  local n last=-1 still=0
  while :; do
    n=$(sink_count "$1")
    [ "${n:-0}" -ge "$2" ] && return
    if [ "${n:-0}" = "$last" ]; then still=$((still + 1)); else still=0 last=${n:-0}; fi
    if [ "$still" -ge "$((${3:-60} * 10))" ]; then
      echo "bench: the sink has ${n:-0} of $2 messages, none for ${3:-60} s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# send PORT MESSAGES: smtp-source (sessions in parallel, one recipient a
# message, size bytes of body) against 127.0.0.1:PORT.
send() {
  local content=(-l "$size")
  [ -n "${source_file:-}" ] && content=(-F "$source_file")
  smtp-source -s "$sessions" "${content[@]}" -m "$2" -f bench@example.com \
    -t rcpt@example.net "127.0.0.1:$1"
}

# rate NAME PORT: run smtp-source against 127.0.0.1:PORT, print msgs/s
# (for e2e, until the sink has them all; fails if it stops getting them).
rate() {
  local start end status=0
  start_sink "$1"
  start=$(date +%s.%N)
  send "$2" "$messages"
  [ "$mode" = e2e ] && { wait_sink "$1" "$messages" || status=$?; }
  end=$(date +%s.%N)
  stop_sink
  [ "$status" = 0 ] || return "$status"
  python3 -c "print(f'{$messages / ($end - $start):.0f}')"
}

# postfix_round [MAIN.CF-LINE...]: one round of Postfix on a fresh queue,
# with these lines added to its main.cf; prints its rate.
postfix_round() {
  local status=0
  start_postfix "$work/postfix" "$postfix_port" "$sink_port" "$@" >/dev/null
  sleep 1
  rate postfix "$postfix_port" || status=$?
  stop_postfix "$work/postfix"
  return "$status"
}

# start_postern [MAIN-LINE...]: Postern from its own config and a fresh
# queue in $work/postern, relaying everything to the sink; the lines (TOML)
# are added to its [main].
start_postern() {
  rm -rf "$work/postern"
  mkdir -p "$work/postern"
  {
    cat <<CF
[main]
myhostname = "bench.example.local"
queue_directory = "queue"
maillog_file = "maillog"
mail_owner = "nobody"
mynetworks = "${postern_mynetworks:-127.0.0.0/8}"
relayhost = "[127.0.0.1]:$sink_port"
smtpd_peername_lookup = "no"
CF
    printf '%s\n' "$@"
    cat <<CF

[[service]]
name = "smtp"
type = "inet"
listen = "127.0.0.1:$postern_port"
command = "smtpd"
process_limit = 2

[[service]]
name = "qmgr"
type = "unix"
listen = ["qmgr", "qmgr-admin", "public/showq"]
command = "qmgr"
wakeup = "300s"

[[service]]
name = "pickup"
type = "unix"
listen = "public/pickup"
command = "pickup"
wakeup = "60s"

[[service]]
name = "smtp-client"
type = "unix"
listen = "smtp"
command = "smtp-client"

[[service]]
name = "local"
type = "unix"
command = "local-delivery"
privileged = true
CF
  } >"$work/postern/master.toml"
  chmod 755 "$work/postern"
  "$bin/master" --config "$work/postern/master.toml" \
    -o daemon_directory="$(cd "$bin" && pwd)" &
  postern_pid=$!
  for _ in $(seq 100); do
    "$bin/qctl" --config "$work/postern/master.toml" status >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 1
}

stop_postern() {
  kill "$postern_pid" 2>/dev/null || true
  wait "$postern_pid" 2>/dev/null || true
  postern_pid=
}

# Peak resident memory of all Postern processes (sum of VmHWM, kB).
postern_peak_kb() {
  local kb total=0
  for pid in $postern_pid $(pgrep -P "$postern_pid"); do
    kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
