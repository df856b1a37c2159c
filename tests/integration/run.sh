#!/bin/bash
# make test-integration: the integration suite once per relay worker count, and, beside the
# first pass, the few tests marked timer_bound (they wait on the protocol's own timers with
# next to no CPU) in a pytest of their own, with the worker count of the last pass (the one
# run_once tests run in); its output follows the first pass.
#
#   run.sh PYTHON TIMER_LOG [WORKERS...] -- [PYTEST_ARGS...]
#
# No WORKERS: one pass, with the relay's own default.  The two pytest sessions take ports of
# their own (TRP_PORT_SLICE, conftest.free_port) and the background one no cache.  pytest's
# exit 5 (nothing selected, e.g. by PYTEST_ARGS) fails only when every session says it.
# Ctrl-C or a signal stops both and waits for them.
set -u

python=$1 log=$2
shift 2
workers=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do workers+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ ${#workers[@]} -gt 0 ] || workers=("")
last=${workers[${#workers[@]}-1]}

rc=0 selected=0
# A session's exit status: 0 and 5 are fine (5: none selected); the first other one is kept.
tally() {
    case $1 in
    0) selected=1 ;;
    5) ;;
    *) selected=1; [ $rc != 0 ] || rc=$1 ;;
    esac
}

# A background job of a non-interactive shell starts with SIGINT ignored, and Python then
# never turns SIGINT into KeyboardInterrupt: put the default handler back.
TRP_RELAY_WORKERS=$last TRP_PORT_SLICE=1/2 "$python" -c '
import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.main(sys.argv[1:]))' -q -p no:cacheprovider --durations=5 -m timer_bound \
    tests/integration "$@" > "$log" 2>&1 &
timer=$!
trap 'kill -INT $timer 2>/dev/null; wait $timer; exit 130' INT TERM HUP

first=1
for w in "${workers[@]}"; do
    echo "== integration tests, relay-server --workers ${w:-(its default)}"
    TRP_RELAY_WORKERS=$w TRP_PORT_SLICE=0/2 "$python" -m pytest -q --durations=10 \
        -m "not timer_bound" tests/integration "$@"
    tally $?
    if [ $first = 1 ]; then
        first=0
        wait $timer
        trc=$?
        echo "== integration tests that wait on timers (run beside the first pass)"
        cat "$log"
        tally $trc
    fi
    [ $rc = 0 ] || break
done
trap - INT TERM HUP
[ $rc != 0 ] && exit $rc
[ $selected = 1 ] || exit 5
exit 0
