#!/usr/bin/env bash
# Runs every fuzz target of the module (each func Fuzz* in a _test.go file) for FUZZTIME each
# (default 60s), one after the other, and stops at the first failure (Go writes the input that
# failed to the package's testdata/fuzz/FuzzName/, where every later `go test` replays it).
#
# With KEEP_CORPUS=1 it also copies what the fuzzer found interesting (Go keeps it in its build
# cache) into the package's testdata/fuzz/FuzzName/, at most KEEP_MAX (default 20) new entries
# per target, so that the corpus is kept with the code and every `go test` replays it.
#
#   make fuzz                         # 60 s a target
#   FUZZTIME=10m KEEP_CORPUS=1 make fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
KEEP_CORPUS=${KEEP_CORPUS:-0}
KEEP_MAX=${KEEP_MAX:-20}
module=$("$GO" list -m)
cache=$("$GO" env GOCACHE)/fuzz

targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
	dir=$(dirname "$f")
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func |$dir |"
done)
n=$(wc -l <<<"$targets")
echo "== $n fuzz targets, $FUZZTIME each"
i=0
while read -r dir name; do
	i=$((i + 1))
	echo "== [$i/$n] $dir $name"
	"$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$dir"
	if [ "$KEEP_CORPUS" = 1 ]; then
		src="$cache/$module/${dir#./}/$name"
		dst="$dir/testdata/fuzz/$name"
		if [ -d "$src" ]; then
			mkdir -p "$dst"
			kept=0
			for e in $(ls -t "$src"); do
				[ -e "$dst/$e" ] && continue
				cp "$src/$e" "$dst/$e"
				kept=$((kept + 1))
				[ "$kept" -ge "$KEEP_MAX" ] && break
			done
			echo "   kept $kept new corpus entries in $dst"
		fi
	fi
done <<<"$targets"
echo "== every fuzz target ran $FUZZTIME without a failure"
