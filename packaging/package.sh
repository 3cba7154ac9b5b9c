#!/bin/sh
# package.sh deb|rpm DESCRIBE ARCH...: build the meshnode packages with nfpm
# into $DIST (default dist), one per ARCH (amd64, arm64), from the binaries
# $DIST/linux-ARCH/meshnode that "make deb"/"make rpm" built first. DESCRIBE is
# the Makefile's VERSION; pkgversion.sh turns it into a package version.
set -eu

# nfpm 2.45.0 is the newest that resolves against this module's dependencies.
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.0

if [ $# -lt 3 ]; then
	echo "usage: package.sh deb|rpm DESCRIBE ARCH..." >&2
	exit 2
fi
packager=$1 describe=$2
shift 2
case $packager in
deb | rpm) ;;
*)
	echo "package.sh: unknown packager '$packager'; use deb or rpm" >&2
	exit 2
	;;
esac

cd "$(dirname "$0")/.."
VERSION=$(packaging/pkgversion.sh "$describe")
DIST=${DIST:-dist}
export VERSION DIST

for ARCH in "$@"; do
	case $ARCH in
	amd64 | arm64) ;;
	*)
		echo "package.sh: unsupported ARCH '$ARCH'; use amd64 or arm64" >&2
		exit 2
		;;
	esac
	if [ ! -x "$DIST/linux-$ARCH/meshnode" ]; then
		echo "package.sh: $DIST/linux-$ARCH/meshnode is missing; run make $packager" >&2
		exit 1
	fi
	export ARCH
	${GO:-go} run "$NFPM" pkg --packager "$packager" \
		--config packaging/nfpm.yaml --target "$DIST/"
done
