#!/usr/bin/env bash
# compare.sh REV [COUNT]: the data-plane benchmark of REV (before) and of the
# working tree (after), built as two test binaries and run alternately in
# one session, so both see the same machine. Prints every line, labelled.
set -euo pipefail
rev=${1:?usage: bench/compare.sh REV [COUNT]}
count=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/before" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach "$work/before" "$rev" >/dev/null
(cd "$work/before" && go test -c -o "$work/before.test" ./bench/)
(cd "$root" && go test -c -o "$work/after.test" ./bench/)
for i in $(seq "$count"); do
	for side in before after; do
		"$work/$side.test" -test.run '^$' -test.bench DataPlane -test.benchtime 100000x -test.count 1 |
			grep '^Benchmark' | sed "s/^/$side  /"
	done
done
