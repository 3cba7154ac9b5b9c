#!/usr/bin/env bash
# build-rev.sh REV OUT: build meshnode as it was at git revision REV into
# OUT (make perf BEFORE=REV measures it beside the working tree's), from a
# temporary worktree that is removed on every exit.
set -euo pipefail
rev=${1:?usage: scripts/build-rev.sh REV OUT}
out=${2:?usage: scripts/build-rev.sh REV OUT}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "$out") # before the build changes directory
git -C "$root" rev-parse --verify --quiet "$rev^{commit}" >/dev/null ||
	{ echo "build-rev.sh: $rev is not a commit here; give a branch, tag or hash" >&2; exit 2; }
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach "$work/src" "$rev" >/dev/null
commit=$(git -C "$work/src" rev-parse --short HEAD)
pkg=github.com/meshnode/meshnode/internal/version
(cd "$work/src" && CGO_ENABLED=0 ${GO:-go} build -trimpath \
	-ldflags "-s -w -X $pkg.Version=$commit-before -X $pkg.Commit=$commit -X $pkg.Date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	-o "$out" ./cmd/meshnode)
echo "built $rev ($commit) into $out"
