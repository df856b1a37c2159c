#!/bin/sh
# make demo: a whole tunnel on loopback, and one request through it.
#
#   curl --> entry-point ==TLS==> relay-server <==TLS== reverse-proxy --> python3 http.server
#
# Everything lives in a temporary directory (keys, the web page, the logs) and is removed at
# the end; ./cert is never touched. Every process started here is stopped by its PID, whatever
# happens (success, failure, Ctrl-C).
#
#   TRP_BIN_DIR=DIR   where the binaries are (make demo sets it; default build/<os>/<arch>)
#   KEEP=1            stay up after the request, until Ctrl-C, to try it by hand
#
# Exit status: 0 when the page came back through the tunnel, 1 otherwise (with the logs).

set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${TRP_BIN_DIR:-}" ]; then
    os=$(uname -s | tr '[:upper:]' '[:lower:]')
    arch=$(uname -m | sed 's/^x86_64$/amd64/; s/^aarch64$/arm64/')
    TRP_BIN_DIR=$ROOT/build/$os/$arch
fi
BIN=$TRP_BIN_DIR
KEEP=${KEEP:-0}
# Debian's python3 first: a pyenv shim in PATH may not be a real interpreter.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi

DIR=
PIDS=
NAMES=
TICK_PID=
WAIT_SECONDS=10

say() { printf '%s\n' "$*"; }
warn() { printf 'demo: %s\n' "$*" >&2; }

# Stop what we started, in reverse order, by PID: SIGTERM, up to 5 s, then SIGKILL.
cleanup() {
    [ -n "$TICK_PID" ] && kill "$TICK_PID" 2>/dev/null
    pids=
    for pid in $PIDS; do pids="$pid $pids"; done
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
    tries=0
    while [ $tries -lt 50 ]; do
        alive=
        for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
        [ -z "$alive" ] && break
        sleep 0.1
        tries=$((tries + 1))
    done
    for pid in $pids; do
        if kill -0 "$pid" 2>/dev/null; then
            warn "process $pid did not stop on SIGTERM within 5 s; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    wait 2>/dev/null
    [ -n "$DIR" ] && rm -rf "$DIR"
    PIDS=
    DIR=
}

on_exit() {
    status=$?
    trap - EXIT INT TERM
    cleanup
    exit $status
}
trap on_exit EXIT
# A signal ends the script through the EXIT trap. After a successful KEEP=1 run, Ctrl-C (or
# SIGTERM) is the way to stop it, hence a success.
KEEPING=0
on_signal() {
    if [ "$KEEPING" = 1 ]; then
        say "== stopping"
        exit 0
    fi
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

show_logs() {
    for f in "$DIR"/*.log; do
        [ -f "$f" ] || continue
        say "----- $(basename "$f") -----"
        cat "$f"
    done
    [ -n "$DIR" ] && say "-----"
}

fail() {
    warn "FAILED: $*"
    show_logs >&2
    exit 1
}

# start NAME COMMAND...: run COMMAND in the background, stdout and stderr to $DIR/NAME.log.
start() {
    name=$1
    shift
    say "  \$ $*"
    "$@" >"$DIR/$name.log" 2>&1 &
    PIDS="$PIDS $!"
    NAMES="$NAMES $name:$!"
}

# Any process that has died already: fail with its name.
check_alive() {
    for entry in $NAMES; do
        pid=${entry##*:}
        kill -0 "$pid" 2>/dev/null || fail "${entry%%:*} (pid $pid) exited early"
    done
}

for p in gen-cert relay-server reverse-proxy entry-point; do
    [ -x "$BIN/$p" ] || { warn "$BIN/$p not found; build first (make)"; exit 1; }
done
for t in curl mktemp; do
    command -v $t >/dev/null 2>&1 || { warn "$t not found (make deps installs it)"; exit 1; }
done
"$PY" -c 'import http.server' 2>/dev/null || { warn "$PY cannot run http.server"; exit 1; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/trp-demo.XXXXXX") || { warn "mktemp -d failed"; exit 1; }
chmod 700 "$DIR"

say "== keys (in $DIR, not ./cert)"
"$BIN/gen-cert" x509 -o "$DIR" --dns localhost --ip 127.0.0.1 >"$DIR/gen-cert.log" 2>&1 ||
    fail "gen-cert x509"
"$BIN/gen-cert" ed25519 -o "$DIR" >>"$DIR/gen-cert.log" 2>&1 || fail "gen-cert ed25519"
sed 's/^/  /' "$DIR/gen-cert.log"
rm -f "$DIR/gen-cert.log"

# Three free loopback ports, bound together so that they differ. (Another program could take
# one before we do; the run then fails and says so in the logs.)
PORTS=$("$PY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
') || fail "could not find free ports"
set -- $PORTS
RELAY_PORT=$1
HTTP_PORT=$2
ENTRY_PORT=$3

mkdir "$DIR/www"
cat >"$DIR/www/index.html" <<EOF
<!doctype html>
<title>tcp-reverse-proxy demo</title>
<p>The tunnel works: this page was served by python3 http.server on 127.0.0.1:$HTTP_PORT
and came to you through entry-point, relay-server and reverse-proxy.</p>
EOF

# The route's source filter 127.0.0.1 keeps the entry-point's listener on loopback only.
ROUTE=127.0.0.1:$ENTRY_PORT:$HTTP_PORT

say "== starting (logs in $DIR/*.log)"
start destination "$PY" -u -m http.server --bind 127.0.0.1 "$HTTP_PORT" --directory "$DIR/www"
start relay-server "$BIN/relay-server" -p "$RELAY_PORT" --host 127.0.0.1 \
    -c "$DIR/server.crt" -k "$DIR/server.key" -a "$DIR/auth.pub"
# The clients would retry until the relay listens; waiting for it keeps their logs clean.
deadline=$(($(date +%s) + WAIT_SECONDS))
until grep -q 'listening on' "$DIR/relay-server.log"; do
    check_alive
    [ "$(date +%s)" -lt "$deadline" ] || fail "relay-server not listening within $WAIT_SECONDS s"
    sleep 0.1
done
start reverse-proxy "$BIN/reverse-proxy" -s "127.0.0.1:$RELAY_PORT" \
    -c "$DIR/server.crt" -a "$DIR/auth"
start entry-point "$BIN/entry-point" -s "127.0.0.1:$RELAY_PORT" \
    -c "$DIR/server.crt" -a "$DIR/auth" -r "$ROUTE"

URL=http://127.0.0.1:$ENTRY_PORT/
say "== fetching $URL through the tunnel (up to $WAIT_SECONDS s)"
PAGE=
deadline=$(($(date +%s) + WAIT_SECONDS))
while :; do
    check_alive
    if PAGE=$(curl -fsS --max-time 2 "$URL" 2>"$DIR/curl.log"); then
        case $PAGE in *"The tunnel works"*) break ;; esac
    fi
    PAGE=
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 0.2
done
[ -n "$PAGE" ] || fail "no page from $URL within $WAIT_SECONDS s (last curl: $(cat "$DIR/curl.log"))"
rm -f "$DIR/curl.log"
say "$PAGE" | sed 's/^/  | /'
say "== OK: the page came through entry-point -> relay-server -> reverse-proxy"

if [ "$KEEP" = 1 ]; then
    say ""
    say "Still running (KEEP=1). In another terminal, try:"
    say "  curl $URL"
    say "  curl -v $URL"
    say "  tail -f $DIR/*.log"
    say "Press Ctrl-C to stop everything and remove $DIR."
    KEEPING=1
    # 'wait' returns as soon as a signal arrives, so Ctrl-C is handled at once.
    while :; do
        check_alive
        sleep 1 &
        TICK_PID=$!
        wait $TICK_PID
        TICK_PID=
    done
fi

say ""
say "Try it by hand:"
say "  KEEP=1 make demo      # the same tunnel, left running until Ctrl-C"
say "With your own keys in ./cert, as in README.md (Usage), on one machine:"
say "  B=$BIN"
say "  \$B/gen-cert x509 --dns localhost --ip 127.0.0.1"
say "  \$B/gen-cert ed25519"
say "  \$B/relay-server -p 4433 &"
say "  \$B/reverse-proxy -s 127.0.0.1:4433 &"
say "  \$B/entry-point -s 127.0.0.1:4433 -r 127.0.0.1:5001:8000 &"
say "  $PY -m http.server --bind 127.0.0.1 8000 &"
say "  curl http://127.0.0.1:5001/"
exit 0
