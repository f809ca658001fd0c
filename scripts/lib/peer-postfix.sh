# shellcheck shell=bash
# Helpers to run Debian's Postfix as a peer for benchmarks, from its own
# config and queue directories under a scratch directory, on loopback only.
# Sourced by scripts/bench*. Needs root (Postfix's master runs as root).

# install_postfix: Debian's package without touching the system's mail setup.
install_postfix() {
  if ! command -v smtp-source >/dev/null || [ ! -x /usr/lib/postfix/sbin/master ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
  fi
}

# start_postfix DIR PORT RELAY_PORT [MAIN.CF-LINE...]: Postfix listening on
# 127.0.0.1:PORT, relaying everything to [127.0.0.1]:RELAY_PORT, with the
# lines added to its main.cf.
start_postfix() {
  local dir=$1 port=$2 relay_port=$3
  shift 3
  rm -rf "$dir"; mkdir -p "$dir/etc" "$dir/data"
  cat > "$dir/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = peer.example.net
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$relay_port
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
disable_dns_lookups = yes
maillog_file = $dir/maillog
maillog_file_prefixes = /tmp
smtputf8_enable = no
default_process_limit = 100
CF
  printf '%s\n' "$@" >> "$dir/etc/main.cf"
  sed "s/^smtp      inet/127.0.0.1:$port      inet/" /usr/share/postfix/master.cf.dist > "$dir/etc/master.cf"
  mkdir -p "$dir/queue"
  chown postfix "$dir/data"
  # Errors go to syslog, absent here; a pseudo-terminal makes Postfix
  # print them. `check` creates the queue's subdirectories.
  script -qec "postfix -c $dir/etc check" /dev/null
  script -qec "postfix -c $dir/etc start" /dev/null
}

stop_postfix() {
  postfix -c "$1/etc" stop >/dev/null 2>&1 || true
}
