#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for FUZZTIME (default 5s)
# each. Targets are found, not listed: any `func FuzzXxx(f *testing.F)` in a
# _test.go file is run, so a new target needs no change here. Go fuzzes one
# target per `go test` invocation, hence one run each.
#
# A crash leaves its input in the package's testdata/fuzz/FuzzXxx/; commit
# it with the fix, where it becomes a seed that `go test` replays.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}

# path/to/file_test.go:func FuzzXxx(  ->  ./path/to FuzzXxx
mapfile -t targets < <(
	grep -rHoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . |
		grep -v '/testdata/' |
		sed -E 's|^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\(.*$|\1 \2|' |
		sort
)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, $FUZZTIME each"
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	log=$(mktemp)
	start=$SECONDS
	if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
		echo "ok    $pkg $name ($((SECONDS - start))s)"
	elif grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
		# Go before 1.27 can fail a run that found nothing when a worker
		# misses the -fuzztime deadline (golang/go#75804). Such a run
		# wrote no input; replaying the corpus confirms nothing crashes.
		if "$GO" test -count=1 -run "^${name}\$" "$pkg" >>"$log" 2>&1; then
			echo "ok    $pkg $name ($((SECONDS - start))s; the fuzzing deadline race, golang/go#75804, ended the run; corpus replayed)"
		else
			cat "$log"
			failed+=("$pkg $name")
		fi
	else
		cat "$log"
		failed+=("$pkg $name")
	fi
	rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
	printf 'fuzz: FAIL %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
