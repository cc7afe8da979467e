#!/usr/bin/env bash
# bench/decompose.sh — where stepgate's extra cost per request goes, next to
# a bare httputil.ReverseProxy. It builds a copy of the repo patched with
# bench/decompose.patch (never a release build) and runs bench/run.sh three
# times, each with its own bare baseline in every round:
#
#   shell       stepgate's server, wrappers, metrics and upstream transport
#               around a bare ReverseProxy (no policy, no identity, no
#               headers): BENCH_DECOMPOSE_SHELL=1, scenario sg-allow
#   no-headers  the whole gate, but without the headers SPEC §7 adds
#               upstream, the X-Request-Id answer header and the added
#               Cache-Control: BENCH_DECOMPOSE_NO_HEADERS=1
#   full        the gate as shipped (the patched binary without either
#               variable behaves exactly as stepgate)
#
#   bench/decompose.sh                      # 5 rounds of 10s per run
#   DURATION=3s ROUNDS=1 bench/decompose.sh # check the harness
#
# DURATION, ROUNDS, WARMUP, THREADS, CONNECTIONS and RULES are passed to
# bench/run.sh (defaults here: 10s, 5). The patched binary also serves
# net/http/pprof on BENCH_PPROF_ADDR when that is set, for profiles of a run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export DURATION=${DURATION:-10s} ROUNDS=${ROUNDS:-5}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stepgate-decompose.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "decompose: building a patched copy of $repo in $tmp" >&2
mkdir "$tmp/src"
tar -C "$repo" --exclude=./.git -cf - . | tar -C "$tmp/src" -xf -
(cd "$tmp/src" && git apply "$here/decompose.patch") ||
	{ echo "decompose: bench/decompose.patch no longer applies; refresh it" >&2; exit 1; }
(cd "$tmp/src" && go build -o "$tmp/stepgate-decompose" .)

run() {
	local label=$1 scenarios=$2
	shift 2
	echo "decompose: run '$label' ($scenarios)" >&2
	env "$@" BENCH_STEPGATE_BIN="$tmp/stepgate-decompose" SCENARIOS="$scenarios" \
		"$here/run.sh" >"$tmp/$label.md" 2>"$tmp/$label.log" ||
		{ tail -n 20 "$tmp/$label.log" >&2; exit 1; }
}
run shell 'bare sg-allow' BENCH_DECOMPOSE_SHELL=1
run no-headers 'bare sg-allow sg-stepup' BENCH_DECOMPOSE_NO_HEADERS=1
run full 'bare sg-allow sg-stepup'

echo
echo "## Where the cost goes ($(date -u +%FT%RZ), rev $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown), $ROUNDS × $DURATION per run)"
echo
echo "| run | scenario | proxy CPU µs/req | bare's CPU µs/req | req/s ÷ bare, per round | p99 ÷ bare, per round |"
echo "|---|---|--:|--:|--:|--:|"
for label in shell no-headers full; do
	# The run.sh table: | scenario | what | req/s | p50 | p99 | CPU | ÷ | ÷ | per round | per round |
	awk -F'|' -v label="$label" '
		function trim(s) { gsub(/^ +| +$/, "", s); return s }
		NF < 11 { next }
		trim($2) == "bare" { bare = trim($7) }
		trim($2) ~ /^sg-/ { row[++n] = trim($2) "|" trim($7) "|" trim($10) "|" trim($11) }
		END { for (i = 1; i <= n; i++) { split(row[i], f, "|"); printf "| %s | %s | %s | %s | %s | %s |\n", label, f[1], f[2], bare, f[3], f[4] } }
	' "$tmp/$label.md"
done
