#!/bin/sh
# pkgversion.sh DESCRIBE: print the deb/rpm package version for a version
# string from "git describe --tags --always --dirty" (the Makefile's VERSION).
#
#   v1.2.3                   1.2.3
#   v1.2.3-rc.1              1.2.3~rc.1          (~ sorts before 1.2.3)
#   v1.2.3-4-gabc1234        1.2.3+4.gabc1234    (+ sorts after 1.2.3)
#   v1.2.3-4-gabc1234-dirty  1.2.3+4.gabc1234.dirty
#   abc1234 (no tag yet)     0.0.0~dev+abc1234
#   dev (no git)             0.0.0~dev
#
# Both dpkg and rpm (4.10 or later) order "~" before and "+" after the
# release; neither accepts "-" inside the version, which git describe uses.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: pkgversion.sh DESCRIBE (output of git describe --tags --always --dirty)" >&2
	exit 2
fi
in=$1
v=${in#v}
meta=

case $v in
*-dirty)
	v=${v%-dirty}
	dirty=dirty
	;;
*) dirty= ;;
esac

# Commits since the tag: "-N-gHASH".
if printf '%s\n' "$v" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
	meta=$(printf '%s\n' "$v" | sed -E 's/.*-([0-9]+)-(g[0-9a-f]+)$/\1.\2/')
	v=$(printf '%s\n' "$v" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
fi

if printf '%s\n' "$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$'; then
	release=$(printf '%s\n' "$v" | sed -E 's/^([0-9]+\.[0-9]+\.[0-9]+).*/\1/')
	rest=${v#"$release"}
	case $rest in
	-*) out="$release~$(printf '%s\n' "${rest#-}" | tr -- - .)" ;;
	+*) out="$release" meta="$(printf '%s\n' "${rest#+}" | tr -- - .)${meta:+.$meta}" ;;
	*) out=$release ;;
	esac
elif [ -z "$meta" ] && printf '%s\n' "$v" | grep -Eq '^[0-9a-f]{4,40}$'; then
	out=0.0.0~dev meta=$v
elif [ -z "$meta" ] && { [ "$v" = dev ] || [ -z "$v" ]; }; then
	out=0.0.0~dev
else
	echo "pkgversion.sh: '$in' is not a release tag (vX.Y.Z[-pre]), a git describe of one, or a commit; tag releases as vX.Y.Z" >&2
	exit 1
fi

meta=$meta${dirty:+${meta:+.}$dirty}
printf '%s\n' "$out${meta:++$meta}"
