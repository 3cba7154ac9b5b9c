#!/bin/sh
# meshnode postinstall: the deb postinst and the rpm %post.
#
# Arguments: deb "configure OLD-VERSION" (OLD-VERSION empty on a first
# install) or "abort-*"; rpm the number of meshnode packages installed once
# this transaction ends (1 install, 2 upgrade).
#
# DPKG_ROOT is set by dpkg to the target root when it runs scripts outside a
# chroot (dpkg --root --force-script-chrootless) and is empty otherwise; every
# path and the user database are taken relative to it. The packaging tests
# install into a scratch root this way (packaging/README.md).
#
# Neither service is enabled or started here: the node needs a join token in
# its config and the coordinator its public URL first (packaging/README.md).
set -e

user=meshnode-coordinator
home=/var/lib/meshnode-coordinator
units="meshnode.service meshnode-coordinator.service"

# systemd_running is true when systemd manages the target system; in
# containers and chroots it is not, and systemctl would fail there.
systemd_running() {
	[ -d "${DPKG_ROOT:-}/run/systemd/system" ]
}

user_exists() {
	if [ -n "${DPKG_ROOT:-}" ]; then
		grep -q "^$user:" "$DPKG_ROOT/etc/passwd" 2>/dev/null
	else
		getent passwd "$user" >/dev/null 2>&1
	fi
}

# add_user creates the coordinator's system user and group. A node-only host
# does not need them, so a missing useradd is a warning, not a failure.
add_user() {
	user_exists && return 0
	if ! command -v useradd >/dev/null 2>&1; then
		echo "meshnode: useradd not found; create the system user $user before starting meshnode-coordinator.service" >&2
		return 0
	fi
	set -- --system --user-group --home-dir "$home" --no-create-home \
		--shell /usr/sbin/nologin --comment "meshnode coordinator" "$user"
	if [ -n "${DPKG_ROOT:-}" ]; then
		set -- --prefix "$DPKG_ROOT" "$@"
	fi
	useradd "$@"
}

reload_and_restart() {
	systemd_running || return 0
	systemctl daemon-reload || echo "meshnode: systemctl daemon-reload failed" >&2
	if [ "$1" = upgrade ]; then
		# try-restart restarts only the units that are running, so an
		# upgrade never starts a service the admin left stopped. A failed
		# restart must not leave the package half-configured.
		# shellcheck disable=SC2086 # $units is a list of unit names
		systemctl try-restart $units ||
			echo "meshnode: restarting $units failed; see journalctl -u meshnode -u meshnode-coordinator" >&2
	fi
}

case "$1" in
configure)
	add_user
	if [ -n "${2:-}" ]; then
		reload_and_restart upgrade
	else
		reload_and_restart install
	fi
	;;
abort-upgrade | abort-remove | abort-deconfigure) ;;
1)
	add_user
	reload_and_restart install
	;;
[2-9] | [1-9][0-9])
	add_user
	reload_and_restart upgrade
	;;
*)
	echo "meshnode postinstall: unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
