#!/usr/bin/env bash
# make bench: the tunnel against a direct connection, an OpenSSH -R/-L chain,
# a two-hop stunnel chain and a two-hop HAProxy chain, all on loopback, the
# same load on each path in the same run.
#
#   bash bench/run.sh                 full run (a few minutes)
#   BENCH_QUICK=1 bash bench/run.sh   small sizes (under a minute)
#
# env: TRP_BIN_DIR  directory holding relay-server, reverse-proxy, entry-point
#                   (and gen-cert); default build/linux/amd64 under the tree
#      BENCH_QUICK  1 for the quick run
#
# Writes build/bench/results.txt (the table and notes) and
# build/bench/results.csv, and the daemons' logs into build/bench/logs/.
# Exit status: non-zero only when a tool fails, a byte comes back wrong or a
# tunnel daemon dies; never because of a figure.

set -uo pipefail

START_SECONDS=$SECONDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/build/bench
BIN=${TRP_BIN_DIR:-$ROOT/build/linux/amd64}
QUICK=${BENCH_QUICK:-0}
[ "$QUICK" = 1 ] || QUICK=0

die() { echo "bench: $*" >&2; exit 1; }

for p in relay-server reverse-proxy entry-point; do
	[ -x "$BIN/$p" ] || die "$BIN/$p not found (run make first, or set TRP_BIN_DIR)"
done
for t in /usr/sbin/sshd ssh ssh-keygen stunnel4 openssl; do
	command -v "$t" >/dev/null 2>&1 || die "$t not found (Debian: openssh-server openssh-client stunnel4 openssl)"
done
HAPROXY=$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)  # /usr/sbin: not in every PATH
[ -x "$HAPROXY" ] || die "haproxy not found (Debian: haproxy)"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v "$PY" >/dev/null 2>&1 || die "python3 not found (used to pick free ports)"

# ---- the C tools -------------------------------------------------------------
mkdir -p "$OUT" || die "cannot create $OUT"
CC=${CC:-cc}
for t in echo loadgen; do
	$CC -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -pthread \
	    -o "$OUT/$t" "$ROOT/bench/$t.c" || die "building bench/$t.c failed"
done
ECHO_BIN=$OUT/echo
LG=$OUT/loadgen

# ---- loads -------------------------------------------------------------------
MiB=1048576
if [ "$QUICK" = 1 ]; then
	MODE="quick (BENCH_QUICK=1)"
	T1_BYTES=$((32 * MiB)); T8_BYTES=$((4 * MiB))
	LAT_COUNT=500; RATE_SECS=1; BURST_N=100
	HOLD_N=300; HOLD_SECS=1; HOLD_CAP=15
else
	MODE="full"
	T1_BYTES=$((1024 * MiB)); T8_BYTES=$((128 * MiB))
	LAT_COUNT=5000; RATE_SECS=5; BURST_N=500
	HOLD_N=10000; HOLD_SECS=10; HOLD_CAP=30
fi
LAT_SIZE=64
human() { # bytes -> "1 GiB" / "128 MiB"
	awk -v b="$1" 'BEGIN { if (b >= 1073741824 && b % 1073741824 == 0) printf "%d GiB", b/1073741824;
	    else printf "%d MiB", b/1048576 }'
}

# ---- limits, temp dir, clean-up ---------------------------------------------
# Holding 10,000 connections takes about 21,000 descriptors in each process
# of a path (the user's side, the channel, spares): ask for 65,536 where the
# hard limit allows raising (root); every path gets the same limit.
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 65536 ]; then
	ulimit -Hn 65536 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/trp-bench.XXXXXX") || die "mktemp failed"
PIDS=()        # every process this script started, killed by PID on exit
LG_PID=""      # a loadgen running in the background (hold)

descendants() { # PID... -> every descendant PID (by parent PID)
	ps -e -o pid=,ppid= 2>/dev/null | awk -v roots="$*" '
	    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
	    { par[$1] = $2; pids[++m] = $1 }
	    END { changed = 1; guard = 0
	          while (changed && guard++ < 16) { changed = 0
	              for (i = 1; i <= m; i++) { p = pids[i]
	                  if (!(p in want) && (par[p] in want)) { want[p] = 1; out[p] = 1; changed = 1 } } }
	          for (p in out) print p }'
}

cleanup() {
	local rc=$? p kids=() i
	trap - EXIT INT TERM
	if [ -n "$LG_PID" ]; then kill -TERM "$LG_PID" 2>/dev/null; fi
	# sshd's session processes were started by our sshd: collect them first
	if [ -n "${SSHD_PID:-}" ]; then
		mapfile -t kids < <(descendants "$SSHD_PID")
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null
	done
	for p in "${kids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for i in $(seq 1 30); do  # up to 3 s for them to go
		local alive=0
		for p in "${PIDS[@]}" "${kids[@]}"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}" "${kids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ -d "$TMP/logs" ]; then
		rm -rf "$OUT/logs"
		cp -r "$TMP/logs" "$OUT/logs" 2>/dev/null
	fi
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$TMP/logs" "$TMP/keys" "$TMP/ssh" "$TMP/stunnel" "$TMP/haproxy"

# ---- free ports: outside the ephemeral range, so that the load's own
# outgoing connections cannot take one before its daemon binds it -------------
free_ports() { # N -> N distinct free ports on 127.0.0.1
	"$PY" - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
try:
    lo, hi = map(int, open('/proc/sys/net/ipv4/ip_local_port_range').read().split())
except OSError:
    lo, hi = 32768, 60999
ranges = [(r0, r1) for r0, r1 in ((10000, lo - 1), (hi + 1, 65000)) if r1 - r0 > 1000]
got, socks = [], []
for _ in range(2000):
    if len(got) == n:
        break
    r0, r1 = random.choice(ranges) if ranges else (10000, 30000)
    p = random.randint(r0, r1)
    if p in got:
        continue
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', p))
    except OSError:
        s.close()
        continue
    socks.append(s)
    got.append(p)
if len(got) < n:
    sys.exit('bench: could not find %d free ports' % n)
print(' '.join(map(str, got)))
EOF
}
read -r ECHO_PORT SSHD_PORT SSH_RPORT SSH_LPORT ST_APORT ST_BPORT ST_BMID ST_CPORT \
    RELAY_PORT EP_PORT RELAY1_PORT EP1_PORT HAP_APORT HAP_BPORT HAP_CPORT \
    < <(free_ports 15) || die "no free ports"
[ -n "${HAP_CPORT:-}" ] || die "no free ports"

# ---- /proc helpers -----------------------------------------------------------
alive() { # PID -> 0 if running (not a zombie)
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(cut -d')' -f2- "/proc/$1/stat" 2>/dev/null | awk '{print $1}')
	[ -n "$st" ] && [ "$st" != Z ]
}
cpu_ticks() { # PID... -> utime+stime summed (clock ticks), threads included
	local p line rest f sum=0
	for p in "$@"; do
		line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		rest=${line##*) }
		read -r -a f <<<"$rest"
		# rest starts at field 3 (state): field 14 is f[11], 15 is f[12]
		sum=$((sum + f[11] + f[12]))
	done
	echo $sum
}
rss_kib() { # PID... -> VmRSS summed (KiB)
	local p v sum=0
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo $sum
}
fd_count() { # PID... -> open fds summed
	local p n sum=0
	for p in "$@"; do
		n=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
		sum=$((sum + n))
	done
	echo $sum
}

# tunnel1: a second tunnel whose relay has one worker, for the workers table
# (not in the hold figure).
PATHS=(direct ssh stunnel haproxy tunnel tunnel1)
MAIN_PATHS=(direct ssh stunnel haproxy tunnel)	# tunnel1 only in throughput and rate 32
WORKERS=$(nproc)
declare -A PORT PROCS DEAD
PORT[direct]=$ECHO_PORT
PORT[ssh]=$SSH_LPORT
PORT[stunnel]=$ST_APORT
PORT[haproxy]=$HAP_APORT
PORT[tunnel]=$EP_PORT
PORT[tunnel1]=$EP1_PORT

path_pids() { # PATH -> the path's own processes, now
	case $1 in
	ssh) echo "${PROCS[ssh]}" $(descendants "$SSHD_PID") ;;
	*) echo "${PROCS[$1]:-}" ;;
	esac
}

start() { # NAME LOGNAME CMD... : start a daemon in the background, remember it
	local name=$1 log=$2
	shift 2
	"$@" >"$TMP/logs/$log.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

wait_roundtrip() { # PATH : up to 15 s for one echo to work
	local i
	for i in $(seq 1 75); do
		if "$LG" latency 127.0.0.1 "${PORT[$1]}" 1 16 >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

tail_logs() { # LOGNAME... : last lines of logs, indented
	local l
	for l in "$@"; do
		[ -s "$TMP/logs/$l.log" ] || continue
		echo "    --- $l.log (last lines)"
		tail -n 5 "$TMP/logs/$l.log" | sed 's/^/    /'
	done
}

# ---- machine -------------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$CPU_MODEL" ] || CPU_MODEL=unknown
MACHINE="machine: nproc $(nproc), CPU ${CPU_MODEL}, kernel $(uname -sr), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), open-file limit $NOFILE"
echo "$MACHINE"
echo "bench: $MODE run; logs in $OUT/logs"

# ---- keys ----------------------------------------------------------------------
K=$TMP/keys
if [ -x "$BIN/gen-cert" ]; then
	KEYS_BY="gen-cert"
	"$BIN/gen-cert" x509 -o "$K" -d localhost -i 127.0.0.1 --days 10 >"$TMP/logs/gen-cert.log" 2>&1 &&
	    "$BIN/gen-cert" ed25519 -o "$K" >>"$TMP/logs/gen-cert.log" 2>&1 ||
	    { cat "$TMP/logs/gen-cert.log" >&2; die "gen-cert failed"; }
else
	KEYS_BY="openssl (no gen-cert in $BIN)"
	( cd "$K" &&
	  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	      -keyout server.key -out server.crt -days 10 -subj /CN=localhost \
	      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" &&
	  openssl genpkey -algorithm ed25519 -out auth &&
	  chmod 600 auth server.key &&
	  openssl pkey -in auth -pubout -out auth.pub ) >"$TMP/logs/openssl-keys.log" 2>&1 ||
	    { cat "$TMP/logs/openssl-keys.log" >&2; die "making keys with openssl failed"; }
fi

# ---- echo server (the destination of every path) -------------------------------
start echo echo "$ECHO_BIN" "$ECHO_PORT"
ECHO_PID=$LAST_PID
PROCS[direct]=""
wait_roundtrip direct || { tail_logs echo; die "echo server did not answer on 127.0.0.1:$ECHO_PORT"; }

# ---- OpenSSH: sshd + ssh -R (private side) + ssh -L (user side) ----------------
S=$TMP/ssh
ssh-keygen -q -t ed25519 -N '' -f "$S/host_ed25519" -C bench-host >/dev/null || die "ssh-keygen (host key) failed"
ssh-keygen -q -t ed25519 -N '' -f "$S/client_ed25519" -C bench-client >/dev/null || die "ssh-keygen (client key) failed"
cp "$S/client_ed25519.pub" "$S/authorized_keys"
ROOTLOGIN=""
[ "$(id -u)" = 0 ] && ROOTLOGIN="PermitRootLogin yes"
cat >"$S/sshd_config" <<EOF
# sshd for the benchmark only: loopback, key authentication, forwarding.
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $S/host_ed25519
AuthorizedKeysFile $S/authorized_keys
PidFile $S/sshd.pid
UsePAM no
StrictModes no
$ROOTLOGIN
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
GatewayPorts no
LogLevel ERROR
EOF
mkdir -p /run/sshd 2>/dev/null || true   # privilege separation directory
start sshd sshd /usr/sbin/sshd -D -f "$S/sshd_config" -E "$TMP/logs/sshd-E.log"
SSHD_PID=$LAST_PID
SSH_OPTS=(-F /dev/null -N -i "$S/client_ed25519" -p "$SSHD_PORT"
	-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
	-o ExitOnForwardFailure=yes -o IdentitiesOnly=yes -o LogLevel=ERROR)
SSH_USER=$(id -un)
for i in $(seq 1 50); do  # up to 5 s for sshd to listen
	(exec 3<>"/dev/tcp/127.0.0.1/$SSHD_PORT") 2>/dev/null && break
	sleep 0.1
done
start ssh-R ssh-R ssh "${SSH_OPTS[@]}" -R "127.0.0.1:$SSH_RPORT:127.0.0.1:$ECHO_PORT" "$SSH_USER@127.0.0.1"
SSH_R_PID=$LAST_PID
start ssh-L ssh-L ssh "${SSH_OPTS[@]}" -L "127.0.0.1:$SSH_LPORT:127.0.0.1:$SSH_RPORT" "$SSH_USER@127.0.0.1"
SSH_L_PID=$LAST_PID
PROCS[ssh]="$SSH_R_PID $SSH_L_PID $SSHD_PID"
SSH_CIPHER=$(ssh -F /dev/null -G 127.0.0.1 2>/dev/null | awk '/^ciphers / {split($2, c, ","); print c[1]}')

# ---- stunnel: A (client) -TLS-> B (server | client) -TLS-> C (server) ----------
# Session resumption is off on every service: 'sessionResume = no' (stunnel
# then neither offers a cached session as a client nor resumes one as a
# server) and 'sessionCacheTimeout = 0' on the servers, so every connection
# does two full TLS 1.3 handshakes, as the tunnel does (no resumption there).
T=$TMP/stunnel
st_global() { # LOGNAME
	cat <<EOF
foreground = yes
pid =
syslog = no
debug = err
EOF
}
st_tls_common="sslVersionMin = TLSv1.3
sessionResume = no"
{ st_global; cat <<EOF
[a]
client = yes
accept = 127.0.0.1:$ST_APORT
connect = 127.0.0.1:$ST_BPORT
$st_tls_common
verifyPeer = yes
CAfile = $K/server.crt
checkHost = localhost
EOF
} >"$T/a.conf"
{ st_global; cat <<EOF
[b-in]
accept = 127.0.0.1:$ST_BPORT
connect = 127.0.0.1:$ST_BMID
cert = $K/server.crt
key = $K/server.key
$st_tls_common
sessionCacheTimeout = 0
[b-out]
client = yes
accept = 127.0.0.1:$ST_BMID
connect = 127.0.0.1:$ST_CPORT
$st_tls_common
verifyPeer = yes
CAfile = $K/server.crt
checkHost = localhost
EOF
} >"$T/b.conf"
{ st_global; cat <<EOF
[c]
accept = 127.0.0.1:$ST_CPORT
connect = 127.0.0.1:$ECHO_PORT
cert = $K/server.crt
key = $K/server.key
$st_tls_common
sessionCacheTimeout = 0
EOF
} >"$T/c.conf"
start stunnel-C stunnel-C stunnel4 "$T/c.conf"; ST_C_PID=$LAST_PID
start stunnel-B stunnel-B stunnel4 "$T/b.conf"; ST_B_PID=$LAST_PID
start stunnel-A stunnel-A stunnel4 "$T/a.conf"; ST_A_PID=$LAST_PID
PROCS[stunnel]="$ST_A_PID $ST_B_PID $ST_C_PID"

# ---- HAProxy: A (plain in, TLS out) -TLS-> B (terminates, re-encrypts) -TLS-> C -
# C terminates TLS and talks plain TCP to the echo server: two TLS hops, the
# middle one decrypting and re-encrypting, like entry-point -> relay ->
# reverse-proxy. Mode tcp, TLS 1.3 only, the bench's certificate pinned as
# the only CA (verify required) and its host name checked (SNI and
# verifyhost localhost); HAProxy's own defaults otherwise, as it comes:
#  - no maxconn anywhere (global or frontend): each process derives its
#    maxconn from its open-file limit, the same $NOFILE every path gets
#    (about half of it: two descriptors per connection); -V makes it print
#    the value, which the table's notes report;
#  - nbthread its default (the CPUs it may run on);
#  - no timeouts (HAProxy's default; it warns about that in its log);
#  - TLS session resumption on (its default: as a client it offers its
#    server the last session, as a server it issues tickets), where the
#    stunnel chain has it off.
# -db: in the foreground, one process each (its threads inside), started and
# ended like every other daemon here, so that its PID is the one whose CPU
# time and RSS are measured.
H=$TMP/haproxy
cat "$K/server.crt" "$K/server.key" >"$H/server.pem" && chmod 600 "$H/server.pem" ||
    die "cannot write $H/server.pem"
hap_cfg() { # NAME BIND_TLS(0/1) LISTEN_PORT SERVER_TLS(0/1) SERVER_PORT
	local bind_tls="" server_tls=""
	[ "$2" = 1 ] && bind_tls=" ssl crt $H/server.pem ssl-min-ver TLSv1.3"
	[ "$4" = 1 ] && server_tls=" ssl ssl-min-ver TLSv1.3 verify required ca-file $K/server.crt sni str(localhost) verifyhost localhost"
	cat <<EOF
# haproxy $1 for the benchmark only: loopback, mode tcp, HAProxy's defaults
# otherwise: no global section, so no maxconn (derived from the open-file
# limit), nbthread its default.
defaults
	mode tcp
listen $1
	bind 127.0.0.1:$3$bind_tls
	server next 127.0.0.1:$5$server_tls
EOF
}
hap_cfg a 0 "$HAP_APORT" 1 "$HAP_BPORT" >"$H/a.cfg"
hap_cfg b 1 "$HAP_BPORT" 1 "$HAP_CPORT" >"$H/b.cfg"
hap_cfg c 1 "$HAP_CPORT" 0 "$ECHO_PORT" >"$H/c.cfg"
start haproxy-C haproxy-C "$HAPROXY" -db -V -f "$H/c.cfg"; HAP_C_PID=$LAST_PID
start haproxy-B haproxy-B "$HAPROXY" -db -V -f "$H/b.cfg"; HAP_B_PID=$LAST_PID
start haproxy-A haproxy-A "$HAPROXY" -db -V -f "$H/a.cfg"; HAP_A_PID=$LAST_PID
PROCS[haproxy]="$HAP_A_PID $HAP_B_PID $HAP_C_PID"

# ---- the tunnel ------------------------------------------------------------------
# Route 127.0.0.1:LPORT:ECHOPORT (rather than LPORT:ECHOPORT): the loopback
# source filter makes the entry-point bind 127.0.0.1 only, so that nothing
# the bench starts listens beyond loopback; the destination is the same.
# Every daemon runs with its defaults: its limits follow the open-file limit
# (the relay's --max-channels, the clients' --pool-max and --max-connections),
# as HAProxy's maxconn does; no flag is sized to the load.
# start_tunnel SUFFIX RELAY_PORT EP_PORT RELAY_FLAG... : relay, reverse-proxy and
# entry-point, logs relay-server$SUFFIX ..., PIDs in RELAY_PID, RP_PID, EP_PID
# (SUFFIX -1: RELAY1_PID ...).
start_tunnel() {
	local sfx=$1 rport=$2 eport=$3
	shift 3
	start "relay-server$sfx" "relay-server$sfx" "$BIN/relay-server" -q --host 127.0.0.1 \
	    -p "$rport" -c "$K/server.crt" -k "$K/server.key" -a "$K/auth.pub" "$@"
	printf -v "RELAY${sfx//-/}_PID" %s "$LAST_PID"
	start "reverse-proxy$sfx" "reverse-proxy$sfx" "$BIN/reverse-proxy" -q -s "127.0.0.1:$rport" \
	    -c "$K/server.crt" -a "$K/auth"
	printf -v "RP${sfx//-/}_PID" %s "$LAST_PID"
	start "entry-point$sfx" "entry-point$sfx" "$BIN/entry-point" -q -s "127.0.0.1:$rport" \
	    -c "$K/server.crt" -a "$K/auth" -r "127.0.0.1:$eport:$ECHO_PORT"
	printf -v "EP${sfx//-/}_PID" %s "$LAST_PID"
}
start_tunnel "" "$RELAY_PORT" "$EP_PORT" --workers "$WORKERS"
PROCS[tunnel]="$RELAY_PID $RP_PID $EP_PID"
start_tunnel -1 "$RELAY1_PORT" "$EP1_PORT" --workers 1
PROCS[tunnel1]="$RELAY1_PID $RP1_PID $EP1_PID"

wait_roundtrip ssh || { tail_logs sshd-E ssh-R ssh-L; die "the OpenSSH chain did not carry an echo within 15 s"; }
wait_roundtrip stunnel || { tail_logs stunnel-A stunnel-B stunnel-C; die "the stunnel chain did not carry an echo within 15 s"; }
wait_roundtrip haproxy || { tail_logs haproxy-A haproxy-B haproxy-C; die "the HAProxy chain did not carry an echo within 15 s"; }
wait_roundtrip tunnel || { tail_logs relay-server reverse-proxy entry-point; die "the tunnel did not carry an echo within 15 s"; }
wait_roundtrip tunnel1 || { tail_logs relay-server-1 reverse-proxy-1 entry-point-1; die "the tunnel with a one-worker relay did not carry an echo within 15 s"; }

tls_of() { # PORT -> "TLSv1.3 TLS_AES_..." as negotiated by openssl s_client
	timeout 5 openssl s_client -connect "127.0.0.1:$1" -brief -CAfile "$K/server.crt" \
	    </dev/null 2>&1 | awk -F': ' '/^Protocol version/ {v=$2} /^Ciphersuite/ {c=$2} END {print v, c}'
}
ST_TLS=$(tls_of "$ST_CPORT")
HAP_TLS=$(tls_of "$HAP_CPORT")
HAP_VERSION=$("$HAPROXY" -v 2>&1 | awk '/version/ {print $3; exit}')
# the maxconn each haproxy derived from the open-file limit (printed by -V)
HAP_MAXCONN=$(for l in haproxy-A haproxy-B haproxy-C; do
	sed -n 's/.*setting global\.maxconn to \([0-9]*\).*/\1/p' "$TMP/logs/$l.log" | head -n 1; done |
    sort -u | paste -sd/ -)
[ -n "$HAP_MAXCONN" ] || HAP_MAXCONN="not printed"
TUN_TLS=$(tls_of "$RELAY_PORT")
echo "bench: all five paths carry an echo; measuring"

# ---- measuring -------------------------------------------------------------------
declare -A VAL NOTE_CELL
NOTES=()
FAILED=0

check_paths() { # marks a path whose processes died
	local path p
	for path in ssh stunnel haproxy tunnel tunnel1; do
		[ -n "${DEAD[$path]:-}" ] && continue
		for p in ${PROCS[$path]}; do
			if ! alive "$p"; then
				local name
				name=$(for n in RELAY_PID:relay-server RP_PID:reverse-proxy EP_PID:entry-point \
				    SSHD_PID:sshd SSH_R_PID:ssh-R SSH_L_PID:ssh-L ST_A_PID:stunnel-A \
				    ST_B_PID:stunnel-B ST_C_PID:stunnel-C HAP_A_PID:haproxy-A \
				    HAP_B_PID:haproxy-B HAP_C_PID:haproxy-C RELAY1_PID:relay-server-1 \
				    RP1_PID:reverse-proxy-1 EP1_PID:entry-point-1; do
					v=${n%%:*}; [ "${!v}" = "$p" ] && echo "${n#*:}"; done)
				DEAD[$path]="$name (pid $p) exited"
				NOTES+=("$path: $name (pid $p) exited during the run")
				case $path in tunnel*) FAILED=1 ;; esac
				break
			fi
		done
	done
	if ! alive "$ECHO_PID"; then
		NOTES+=("the echo server exited"); FAILED=1
		die "the echo server exited"
	fi
}

kv() { # LINE KEY -> value
	sed -n "s/.*[ ^]$2=\([^ ]*\).*/\1/p" <<<" $1" | head -n 1
}

# run_lg FIGURE PATH MODE ARGS... : runs loadgen; its result line in LG_OUT
run_lg() {
	local fig=$1 path=$2 mode=$3 rc
	shift 3
	LG_OUT=""
	"$LG" "$mode" 127.0.0.1 "${PORT[$path]}" "$@" >"$TMP/lg.out" 2>"$TMP/lg.err"
	rc=$?
	LG_OUT=$(grep -m1 "^$mode " "$TMP/lg.out")
	if [ -s "$TMP/lg.err" ]; then
		NOTES+=("$fig, $path: $(head -c 600 "$TMP/lg.err" | tr '\n' ';' | sed 's/;$//')")
	fi
	if [ $rc -ne 0 ]; then
		echo "bench: loadgen $mode on $path failed (exit $rc):" >&2
		sed 's/^/    /' "$TMP/lg.err" >&2
		FAILED=1
		return 1
	fi
	return 0
}

progress() { printf '  %-34s %-8s %s\n' "$1" "$2" "$3"; }

# ---- throughput + CPU per GiB ----
tput_fig() { # FIG CPUFIG CONNS BYTES
	local fig=$1 cpufig=$2 conns=$3 bytes=$4 path pids t0 t1 v
	for path in "${PATHS[@]}"; do
		[ -n "${DEAD[$path]:-}" ] && { VAL[$fig|$path]="dead"; VAL[$cpufig|$path]="dead"; continue; }
		pids=$(path_pids "$path")
		t0=$(cpu_ticks $pids)
		if run_lg "$fig" "$path" tput "$conns" "$bytes"; then
			t1=$(cpu_ticks $pids)
			VAL[$fig|$path]=$(kv "$LG_OUT" mbps)
			if [ "$path" = direct ]; then
				VAL[$cpufig|$path]="—"
			else
				# CPU seconds per GiB of payload sent by the client (one way)
				VAL[$cpufig|$path]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" \
				    -v b=$((conns * bytes)) 'BEGIN { printf "%.2f", d / hz / (b / 1073741824) }')
			fi
		else
			VAL[$fig|$path]="FAIL"; VAL[$cpufig|$path]="FAIL"
		fi
		progress "$fig" "$path" "${VAL[$fig|$path]} MB/s, ${VAL[$cpufig|$path]} cpu-s/GiB"
		check_paths
	done
}

latency_fig() {
	local path
	for path in "${MAIN_PATHS[@]}"; do
		[ -n "${DEAD[$path]:-}" ] && { VAL[lat50|$path]="dead"; VAL[lat99|$path]="dead"; continue; }
		if run_lg "latency" "$path" latency "$LAT_COUNT" "$LAT_SIZE"; then
			VAL[lat50|$path]=$(kv "$LG_OUT" p50_us)
			VAL[lat99|$path]=$(kv "$LG_OUT" p99_us)
		else
			VAL[lat50|$path]="FAIL"; VAL[lat99|$path]="FAIL"
		fi
		progress "latency ${LAT_COUNT} x ${LAT_SIZE} B" "$path" "p50 ${VAL[lat50|$path]} us, p99 ${VAL[lat99|$path]} us"
		check_paths
	done
}

rate_fig() { # FIG PARALLEL
	local fig=$1 par=$2 path paths=("${MAIN_PATHS[@]}")
	[ "$par" -gt 1 ] && paths=("${PATHS[@]}")
	for path in "${paths[@]}"; do
		[ -n "${DEAD[$path]:-}" ] && { VAL[$fig|$path]="dead"; VAL[${fig}f|$path]="dead"; continue; }
		if run_lg "rate $par parallel" "$path" rate "$par" "$RATE_SECS"; then
			VAL[$fig|$path]=$(kv "$LG_OUT" cps)
			VAL[${fig}f|$path]=$(kv "$LG_OUT" failures)
		else
			VAL[$fig|$path]="FAIL"; VAL[${fig}f|$path]="FAIL"
		fi
		progress "rate, $par parallel, ${RATE_SECS} s" "$path" "${VAL[$fig|$path]} conn/s, ${VAL[${fig}f|$path]} failures"
		check_paths
	done
}

# SYNs the kernel dropped so far: listen queue overflows and drops, and
# request-queue drops (TcpExt in /proc/net/netstat; this network namespace).
syn_drops() {
	awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1 }
	    else { for (i = 2; i <= NF; i++) if (n[i] == "ListenDrops" || n[i] == "TCPReqQFullDrop") s += $i } }
	    END { print s + 0 }' /proc/net/netstat 2>/dev/null || echo 0
}

burst_fig() {
	local path drops0
	for path in "${MAIN_PATHS[@]}"; do
		[ -n "${DEAD[$path]:-}" ] && { VAL[burst|$path]="dead"; VAL[burstf|$path]="dead"; VAL[burstsyn|$path]="dead"; continue; }
		drops0=$(syn_drops)
		if run_lg "burst $BURST_N" "$path" burst "$BURST_N"; then
			VAL[burst|$path]=$(kv "$LG_OUT" ms)
			VAL[burstf|$path]=$(kv "$LG_OUT" failures)
		else
			VAL[burst|$path]="FAIL"; VAL[burstf|$path]="FAIL"
		fi
		VAL[burstsyn|$path]=$(( $(syn_drops) - drops0 ))
		progress "burst $BURST_N" "$path" "${VAL[burst|$path]} ms, ${VAL[burstf|$path]} failures, ${VAL[burstsyn|$path]} SYNs dropped"
		check_paths
	done
}

hold_fig() {
	local path pids rss0 fd0 rss1 i line held rc fdn back waited
	# A proxy process holds two descriptors per connection (the user's
	# side and the channel onward), and each tunnel daemon is one process.
	if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((2 * HOLD_N + 256)) ]; then
		NOTES+=("hold $HOLD_N: the open-file limit ($NOFILE, the hard limit here; raising it needs root with CAP_SYS_RESOURCE) is below 2 per connection plus spares: a one-process proxy holding both sides of each connection stops near $(( (NOFILE - 256) / 2 ))")
	fi
	for path in "${MAIN_PATHS[@]}"; do
		if [ -n "${DEAD[$path]:-}" ]; then
			for k in held heldok mem fdback; do VAL[$k|$path]="dead"; done
			continue
		fi
		pids=$(path_pids "$path")
		rss0=$(rss_kib $pids); fd0=$(fd_count $pids)
		"$LG" hold 127.0.0.1 "${PORT[$path]}" "$HOLD_N" "$HOLD_SECS" "$HOLD_CAP" \
		    >"$TMP/lg.out" 2>"$TMP/lg.err" &
		LG_PID=$!
		held=""
		# wait for "held": set-up cap + 15 s at most
		for i in $(seq 1 $(( (HOLD_CAP + 15) * 10 ))); do
			line=$(grep -m1 '^held ' "$TMP/lg.out" 2>/dev/null)
			if [ -n "$line" ]; then held=$(kv "$line" n); break; fi
			alive "$LG_PID" || break
			sleep 0.1
		done
		if [ -n "$held" ]; then
			# let the path settle, then measure while the connections are held
			sleep "$(awk -v h="$HOLD_SECS" 'BEGIN { print (h >= 2 ? 1 : h / 2) }')"
			pids=$(path_pids "$path")
			rss1=$(rss_kib $pids)
			HELD_FDS[$path]=$(fd_count $pids)
		fi
		# loadgen finishes by itself: hold + 20 s for the second echoes
		for i in $(seq 1 $(( (HOLD_CAP + HOLD_SECS + 40) * 10 ))); do
			alive "$LG_PID" || break
			sleep 0.1
		done
		if alive "$LG_PID"; then kill -KILL "$LG_PID" 2>/dev/null; fi
		wait "$LG_PID"; rc=$?
		LG_PID=""
		line=$(grep -m1 '^hold ' "$TMP/lg.out")
		if [ -s "$TMP/lg.err" ]; then
			NOTES+=("hold $HOLD_N, $path: $(head -c 600 "$TMP/lg.err" | tr '\n' ';' | sed 's/;$//')")
		fi
		if [ $rc -ne 0 ] || [ -z "$line" ] || [ -z "$held" ]; then
			echo "bench: loadgen hold on $path failed (exit $rc):" >&2
			sed 's/^/    /' "$TMP/lg.err" >&2
			FAILED=1
			for k in held heldok mem fdback; do VAL[$k|$path]="FAIL"; done
			check_paths
			continue
		fi
		VAL[held|$path]=$held
		VAL[heldok|$path]=$(kv "$line" ok)
		if [ "$held" -lt "$HOLD_N" ] || [ "${VAL[heldok|$path]}" -lt "$held" ]; then
			VAL[held|$path]="$held !"
			case $path in
			ssh) NOTES+=("hold $HOLD_N, ssh: managed $held (marked '!'; OpenSSH's own limits, not a failure of the run)")
			     tail_logs sshd-E ssh-R ssh-L >"$TMP/tail.txt" ;;
			stunnel) NOTES+=("hold $HOLD_N, stunnel: managed $held (marked '!')")
			     tail_logs stunnel-A stunnel-B stunnel-C >"$TMP/tail.txt" ;;
			haproxy) # no log lines configured: its logs hold only the start-up
			     NOTES+=("hold $HOLD_N, haproxy: managed $held (marked '!'; its maxconn $HAP_MAXCONN, derived from the open-file limit)")
			     : >"$TMP/tail.txt" ;;
			tunnel) NOTES+=("hold $HOLD_N, tunnel: managed $held (marked '!')")
			     tail_logs relay-server reverse-proxy entry-point >"$TMP/tail.txt" ;;
			*) NOTES+=("hold $HOLD_N, $path: managed $held (marked '!')"); : >"$TMP/tail.txt" ;;
			esac
			while IFS= read -r l; do NOTES+=("$l"); done <"$TMP/tail.txt"
		fi
		if [ "$path" = direct ]; then
			VAL[mem|$path]="—"; VAL[fdback|$path]="—"
		else
			if [ "$held" -gt 0 ]; then
				VAL[mem|$path]=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" \
				    'BEGIN { printf "%.1f", (b - a) / n }')
			else
				VAL[mem|$path]="n/a"
			fi
			# fds of the path's processes back to the idle count within 20 s
			# (the tunnel's pools give surplus channels back at their
			# keepalive ticks, every 5 s: a channel may need two)
			back=no; waited=0
			for i in $(seq 1 200); do
				fdn=$(fd_count $(path_pids "$path"))
				if [ "$fdn" -le "$fd0" ]; then back=yes; break; fi
				sleep 0.1
			done
			waited=$(awk -v i="$i" 'BEGIN { printf "%.1f", (i - 1) / 10 }')
			if [ $back = yes ]; then
				VAL[fdback|$path]="yes"
				FDNOTE[$path]="idle $fd0, held ${HELD_FDS[$path]}, back to $fdn after ${waited} s"
			else
				VAL[fdback|$path]="no"
				FDNOTE[$path]="idle $fd0, held ${HELD_FDS[$path]}, still $fdn after 20 s"
			fi
		fi
		progress "hold $HOLD_N for ${HOLD_SECS} s" "$path" "held ${VAL[held|$path]}, ok after hold ${VAL[heldok|$path]}, ${VAL[mem|$path]} KiB/conn, fds back: ${VAL[fdback|$path]}"
		check_paths
	done
}
declare -A HELD_FDS FDNOTE

F1="tput1"; F8="tput8"
tput_fig "$F1" cpu1 1 "$T1_BYTES"
tput_fig "$F8" cpu8 8 "$T8_BYTES"
latency_fig
rate_fig rate1 1
rate_fig rate32 32
burst_fig
hold_fig

# ---- the table -------------------------------------------------------------------
# rows: id | label | better (hi/lo/none) | ratio against direct too (1/0)
ROWS=(
	"tput1|throughput, 1 conn x $(human "$T1_BYTES") (MB/s)|hi|0"
	"tput8|throughput, 8 conns x $(human "$T8_BYTES") (MB/s)|hi|0"
	"cpu1|CPU per GiB sent, 1 conn (cpu-s)|lo|0"
	"cpu8|CPU per GiB sent, 8 conns (cpu-s)|lo|0"
	"lat50|latency p50, ${LAT_COUNT} x ${LAT_SIZE} B (us)|lo|1"
	"lat99|latency p99, ${LAT_COUNT} x ${LAT_SIZE} B (us)|lo|1"
	"rate1|conn rate, 1 parallel, ${RATE_SECS} s (conn/s)|hi|0"
	"rate1f|  failures|none|0"
	"rate32|conn rate, 32 parallel, ${RATE_SECS} s (conn/s)|hi|0"
	"rate32f|  failures|none|0"
	"burst|burst of ${BURST_N}: all echoed (ms)|lo|1"
	"burstf|  failures|none|0"
	"burstsyn|  SYNs dropped|none|0"
	"held|hold ${HOLD_N}: connections held|none|0"
	"heldok|  still echoing after ${HOLD_SECS} s|none|0"
	"mem|memory per held conn (KiB)|lo|0"
	"fdback|fds back to idle within 20 s|none|0"
)
isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { # A B -> A/B formatted, or ""
	if isnum "$1" && isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
		awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
	fi
}

ELAPSED=$((SECONDS - START_SECONDS))
{
	echo "tcp-reverse-proxy benchmark ($MODE run, $(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
	echo "$MACHINE"
	echo "paths: direct = client -> echo server; ssh = OpenSSH ssh -L -> sshd -> ssh -R (one sshd, two sessions);"
	echo "       stunnel = stunnel A (client) -TLS-> B (server+client) -TLS-> C (server), full handshakes;"
	echo "       haproxy = haproxy A (plain in, TLS out) -TLS-> B (terminates, re-encrypts) -TLS-> C (terminates),"
	echo "       mode tcp, HAProxy's defaults otherwise (maxconn derived from the open-file limit: $HAP_MAXCONN;"
	echo "       nbthread its default; session resumption on, its default);"
	echo "       tunnel = entry-point -TLS-> relay-server <-TLS- reverse-proxy ($("$BIN/relay-server" -V 2>&1 | head -n1)),"
	echo "       relay-server --workers $WORKERS (the number of cores, its default)."
	echo "crypto: ssh $(ssh -V 2>&1), cipher $SSH_CIPHER (OpenSSH default); stunnel $(stunnel4 -version 2>&1 | awk '/^stunnel/ {print $2; exit}'), $ST_TLS;"
	echo "        haproxy $HAP_VERSION, $HAP_TLS; tunnel $TUN_TLS; keys by $KEYS_BY."
	echo
	printf '%-42s %10s %10s %10s %10s %10s | %9s %9s %9s %9s\n' "figure" direct ssh stunnel haproxy tunnel \
	    "tun/ssh" "tun/stun" "tun/hap" "tun/dir"
	printf '%s\n' "$(printf '%.0s-' $(seq 1 139))"
	for r in "${ROWS[@]}"; do
		IFS='|' read -r id label better withdirect <<<"$r"
		d=${VAL[$id|direct]:-}; s=${VAL[$id|ssh]:-}; st=${VAL[$id|stunnel]:-}
		h=${VAL[$id|haproxy]:-}; t=${VAL[$id|tunnel]:-}
		rs=""; rst=""; rh=""; rd=""
		if [ "$better" != none ]; then
			rs=$(ratio "$t" "$s"); rst=$(ratio "$t" "$st"); rh=$(ratio "$t" "$h")
			[ "$withdirect" = 1 ] && rd=$(ratio "$t" "$d")
		fi
		printf '%-42s %10s %10s %10s %10s %10s | %9s %9s %9s %9s\n' "$label" "$d" "$s" "$st" "$h" "$t" \
		    "$rs" "$rst" "$rh" "$rd"
	done
	echo
	echo "The relay's workers: the same tunnel with relay-server --workers 1 (its own three daemons), same run."
	printf '%-42s %10s %10s | %9s\n' "figure" "1 worker" "$WORKERS workers" "ratio"
	printf '%s\n' "$(printf '%.0s-' $(seq 1 78))"
	for r in "${ROWS[@]}"; do
		IFS='|' read -r id label better withdirect <<<"$r"
		case $id in tput1|tput8|cpu1|cpu8|rate32|rate32f) ;; *) continue ;; esac
		w1=${VAL[$id|tunnel1]:-}; wn=${VAL[$id|tunnel]:-}
		rw=""
		[ "$better" != none ] && rw=$(ratio "$wn" "$w1")
		printf '%-42s %10s %10s | %9s\n' "$label" "$w1" "$wn" "$rw"
	done
	echo
	echo "Ratios are tunnel / other: above 1 is better for MB/s and conn/s, below 1 is better for cpu-s, us, ms and KiB."
	echo "CPU per GiB: utime+stime (/proc/PID/stat fields 14-15) of the path's own processes (ssh: both ssh clients,"
	echo "  sshd and its session processes; stunnel, haproxy: their three processes; tunnel: its three daemons; not"
	echo "  the echo server, not the load generator), divided by the GiB of payload the client sent (carried one way;"
	echo "  the echo carries the same amount back)."
	echo "Memory per held conn: VmRSS of the same processes while the connections are held, minus before, divided by"
	echo "  the connections held.  fds back: open fds of those processes return to the pre-hold count within 20 s."
	echo "Latency: one connection, TCP_NODELAY, sequential echoes, the first 10 not timed.  Throughput: echoed bytes /"
	echo "  wall time, 256 KiB writes, every byte compared.  Connection rate: connect, 16 B echo, close, per thread."
	echo "Burst: ${BURST_N} connects at once, each echoes 16 B.  SYNs dropped: the kernel's ListenDrops + TCPReqQFullDrop"
	echo "  (/proc/net/netstat) across that path's burst."
	echo "Hold: ${HOLD_N} connections (at most 500 connecting at once, set-up capped at ${HOLD_CAP} s), each echoes 16 B,"
	echo "  held ${HOLD_SECS} s, each echoes 16 B again.  '!' = fewer than asked."
	echo "The daemons run with their defaults (limits derived from the open-file limit); every process's open-file limit is $NOFILE"
	echo "  (haproxy's maxconn, derived from it: $HAP_MAXCONN)."
	for path in ssh stunnel haproxy tunnel; do
		[ -n "${FDNOTE[$path]:-}" ] && echo "fds, $path: ${FDNOTE[$path]}"
	done
	if [ ${#NOTES[@]} -gt 0 ]; then
		echo
		echo "notes:"
		for n in "${NOTES[@]}"; do echo "  $n"; done
	fi
	echo
	echo "run time: ${ELAPSED} s"
} >"$OUT/results.txt"

{
	echo "figure,unit,direct,ssh,stunnel,haproxy,tunnel,tunnel_per_ssh,tunnel_per_stunnel,tunnel_per_haproxy,tunnel_per_direct,tunnel_relay_1_worker"
	for r in "${ROWS[@]}"; do
		IFS='|' read -r id label better withdirect <<<"$r"
		unit=$(sed -n 's/.*(\([^)]*\))$/\1/p' <<<"$label")
		name=$(sed 's/ *([^)]*)$//; s/^ *//' <<<"$label")
		[ "$id" = rate1f ] && name="conn rate, 1 parallel: failures"
		[ "$id" = rate32f ] && name="conn rate, 32 parallel: failures"
		[ "$id" = burstf ] && name="burst of ${BURST_N}: failures"
		[ "$id" = burstsyn ] && name="burst of ${BURST_N}: SYNs dropped"
		[ "$id" = heldok ] && name="hold ${HOLD_N}: still echoing after ${HOLD_SECS} s"
		d=${VAL[$id|direct]:-}; s=${VAL[$id|ssh]:-}; st=${VAL[$id|stunnel]:-}
		h=${VAL[$id|haproxy]:-}; t=${VAL[$id|tunnel]:-}
		rs=""; rst=""; rh=""; rd=""
		if [ "$better" != none ]; then
			rs=$(ratio "$t" "$s"); rst=$(ratio "$t" "$st"); rh=$(ratio "$t" "$h")
			[ "$withdirect" = 1 ] && rd=$(ratio "$t" "$d")
		fi
		[ "$d" = "—" ] && d=""
		printf '"%s",%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$name" "$unit" "$d" "$s" "$st" "$h" "$t" \
		    "$rs" "$rst" "$rh" "$rd" "${VAL[$id|tunnel1]:-}"
	done
} >"$OUT/results.csv"

echo
cat "$OUT/results.txt"
echo
echo "bench: wrote $OUT/results.txt and $OUT/results.csv"
if [ $FAILED -ne 0 ]; then
	echo "bench: FAILED (a tool failed, a byte was wrong, or a tunnel daemon died; see above)" >&2
	exit 1
fi
exit 0
