#!/usr/bin/env bash
# Install Postern.
#
#   scripts/install.sh                  build release binaries and install to /
#   DESTDIR=/tmp/stage scripts/install.sh   stage into a directory (packaging)
#   BUILD_DIR=target/debug scripts/install.sh   install already-built binaries
#
# Layout: daemons in $DESTDIR/usr/libexec/postern/, qctl in $DESTDIR/usr/sbin/
# (and as mailq and newaliases in $DESTDIR/usr/bin/), sendmail in
# $DESTDIR/usr/libexec/postern/ linked from $DESTDIR/usr/sbin/sendmail,
# the config in $DESTDIR/etc/postern/master.toml (an existing one is kept;
# the new example goes beside it as master.toml.dist), the systemd unit in
# $DESTDIR/lib/systemd/system/postern.service.
#
# Run as root with no DESTDIR (a real system), it also creates the
# mail_owner account `postern` (a system user with no login shell) and the
# queue directory /var/spool/postern.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR="${DESTDIR:-}"
DAEMONS="master smtpd qmgr pickup smtp-client local-delivery tlsmgr"

if [ -z "${BUILD_DIR:-}" ]; then
  cargo build --release --workspace --bins
  BUILD_DIR=target/release
fi
for b in $DAEMONS qctl sendmail; do
  [ -x "$BUILD_DIR/$b" ] || { echo "install.sh: $BUILD_DIR/$b is missing" >&2; exit 1; }
done

install -d -m 0755 "$DESTDIR/usr/libexec/postern" "$DESTDIR/usr/sbin" \
  "$DESTDIR/etc/postern" "$DESTDIR/lib/systemd/system"
for b in $DAEMONS sendmail; do
  install -m 0755 "$BUILD_DIR/$b" "$DESTDIR/usr/libexec/postern/$b"
done
install -m 0755 "$BUILD_DIR/qctl" "$DESTDIR/usr/sbin/qctl"
# mailq and newaliases are qctl under the names programs call; another
# MTA's commands of those names are left alone.
install -d -m 0755 "$DESTDIR/usr/bin"
for cmd in mailq newaliases; do
  if [ ! -e "$DESTDIR/usr/bin/$cmd" ] || [ "$(readlink "$DESTDIR/usr/bin/$cmd")" = ../sbin/qctl ]; then
    ln -sfn ../sbin/qctl "$DESTDIR/usr/bin/$cmd"
  else
    echo "kept $DESTDIR/usr/bin/$cmd (not Postern's)"
  fi
done
# /usr/sbin/sendmail is what programs run; another MTA's is left alone.
if [ ! -e "$DESTDIR/usr/sbin/sendmail" ] || [ "$(readlink "$DESTDIR/usr/sbin/sendmail")" = ../libexec/postern/sendmail ]; then
  ln -sfn ../libexec/postern/sendmail "$DESTDIR/usr/sbin/sendmail"
else
  echo "kept $DESTDIR/usr/sbin/sendmail (not Postern's)"
fi
if [ -e "$DESTDIR/etc/postern/master.toml" ]; then
  install -m 0644 master.toml "$DESTDIR/etc/postern/master.toml.dist"
  echo "kept existing $DESTDIR/etc/postern/master.toml (new example: master.toml.dist)"
else
  install -m 0644 master.toml "$DESTDIR/etc/postern/master.toml"
fi
install -m 0644 packaging/postern.service "$DESTDIR/lib/systemd/system/postern.service"

if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ]; then
  if ! getent passwd postern >/dev/null; then
    useradd --system --home-dir /var/spool/postern --no-create-home \
      --shell /usr/sbin/nologin --user-group postern
    echo "created the mail_owner account postern"
  fi
  install -d -m 0755 /var/spool/postern
  # sendmail works before the master first starts (which makes the rest).
  install -d -m 3733 -o postern -g postern /var/spool/postern/maildrop
  command -v systemctl >/dev/null && systemctl daemon-reload || true
fi
echo "installed Postern into ${DESTDIR:-/}"
