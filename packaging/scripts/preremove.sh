#!/bin/sh
# meshnode preremove: the deb prerm and the rpm %preun.
#
# Arguments: deb "remove", "upgrade NEW-VERSION", "deconfigure ..." or
# "failed-upgrade OLD-VERSION"; rpm the number of meshnode packages left once
# this transaction ends (0 on erase, 1 or more on upgrade).
#
# Only a real removal stops and disables the services; an upgrade leaves them
# running and the postinstall of the new version restarts them.
# DPKG_ROOT: see postinstall.sh.
set -e

units="meshnode.service meshnode-coordinator.service"

systemd_running() {
	[ -d "${DPKG_ROOT:-}/run/systemd/system" ]
}

case "$1" in
remove | 0)
	if systemd_running; then
		# A failed stop must not block the removal of the package.
		# shellcheck disable=SC2086 # $units is a list of unit names
		systemctl disable --now $units ||
			echo "meshnode: stopping $units failed" >&2
	fi
	;;
upgrade | deconfigure | failed-upgrade | [1-9] | [1-9][0-9]) ;;
*)
	echo "meshnode preremove: unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
