#!/bin/sh
# make fuzz: run each libFuzzer target for SECONDS on a scratch copy of its
# seed corpus (tests/fuzz/corpus/TARGET; the committed one never grows),
# print one line per target, and fail if any found a crash, a leak or a
# timeout.  SECONDS 0 only runs the seeds.
#
#   sh tests/fuzz/run.sh BUILD_DIR SECONDS TIMEOUT TARGET...
#
# BUILD_DIR holds fuzz_TARGET; each run's log, corpus and crash inputs go
# to BUILD_DIR/run/TARGET/.
set -u

if [ $# -lt 4 ]; then
	echo "usage: $0 BUILD_DIR SECONDS TIMEOUT TARGET..." >&2
	exit 2
fi
dir=$1
secs=$2
timeout=$3
shift 3
here=$(dirname "$0")

# A stack for UBSan's reports too; ASan's defaults find leaks.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export UBSAN_OPTIONS

if [ "$secs" -gt 0 ] 2>/dev/null; then
	budget="-max_total_time=$secs"
else
	budget="-runs=0"
fi

# The value after "key:" in the last line of log that has it.
last() {
	sed -n "s/.*[ 	]$1 \([^ ]*\).*/\1/p" "$2" | tail -n 1
}

# A stat::key of -print_final_stats.
final() {
	sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

failed=
for t in "$@"; do
	bin=$dir/fuzz_$t
	work=$dir/run/$t
	log=$work/log
	rm -rf "$work"
	mkdir -p "$work/corpus" "$work/crashes" || exit 2
	seeds=0
	if [ -d "$here/corpus/$t" ]; then
		seeds=$(find "$here/corpus/$t" -type f | wc -l)
		find "$here/corpus/$t" -type f -exec cp {} "$work/corpus/" \; ||
		    exit 2
	fi
	dict=
	if [ -f "$here/$t.dict" ]; then
		dict=-dict=$here/$t.dict
	fi
	"$bin" $budget -timeout="$timeout" -print_final_stats=1 \
	    -artifact_prefix="$work/crashes/" $dict "$work/corpus" \
	    >"$log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		printf '%-12s ok  %9s execs %7s/s  cov %5s  ft %6s  corpus %5s (%s) from %s seeds\n' \
		    "$t" "$(final number_of_executed_units "$log")" \
		    "$(final average_exec_per_sec "$log")" \
		    "$(last cov: "$log")" "$(last ft: "$log")" \
		    "$(last corp: "$log" | cut -d/ -f1)" \
		    "$(last corp: "$log" | cut -d/ -f2)" "$seeds"
		continue
	fi
	why=$(grep -m 1 -E 'ERROR: (AddressSan|LeakSan|libFuzzer)|runtime error:|check failed:' \
	    "$log")
	printf '%-12s FAILED (exit %s): %s\n' "$t" "$rc" "${why:-see the log}"
	echo "--- the end of $log:"
	tail -n 60 "$log"
	echo "--- input(s) that failed, in $work/crashes/:"
	ls -l "$work/crashes/"
	echo "--- reproduce: $bin $work/crashes/FILE"
	failed="$failed $t"
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
