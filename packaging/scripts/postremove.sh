#!/bin/sh
# meshnode postremove: the deb postrm and the rpm %postun.
#
# Arguments: deb "remove", "purge", "upgrade NEW-VERSION", "disappear",
# "failed-upgrade", "abort-install" or "abort-upgrade"; rpm the number of
# meshnode packages left once this transaction ends (0 on erase).
#
# State (the node's private key, the coordinator's database) is removed on a
# deb purge only. rpm has no purge: an erase keeps /var/lib/meshnode* and the
# coordinator user, as Fedora's packaging guidelines ask.
# DPKG_ROOT: see postinstall.sh.
set -e

user=meshnode-coordinator
state_dirs="/var/lib/meshnode /var/lib/meshnode-coordinator"

systemd_running() {
	[ -d "${DPKG_ROOT:-}/run/systemd/system" ]
}

reload() {
	systemd_running || return 0
	systemctl daemon-reload || echo "meshnode: systemctl daemon-reload failed" >&2
}

user_exists() {
	if [ -n "${DPKG_ROOT:-}" ]; then
		grep -q "^$user:" "$DPKG_ROOT/etc/passwd" 2>/dev/null
	else
		getent passwd "$user" >/dev/null 2>&1
	fi
}

# del_user removes the coordinator user and its group. Its files went with
# the state directories just before, so no file is left for a later user
# that reuses the uid.
del_user() {
	user_exists || return 0
	if ! command -v userdel >/dev/null 2>&1; then
		echo "meshnode: userdel not found; the system user $user is left in place" >&2
		return 0
	fi
	if [ -n "${DPKG_ROOT:-}" ]; then
		userdel --prefix "$DPKG_ROOT" "$user"
	else
		userdel "$user"
	fi
}

case "$1" in
purge)
	for dir in $state_dirs; do
		rm -rf "${DPKG_ROOT:-}$dir"
	done
	del_user
	reload
	;;
remove | 0)
	reload
	;;
upgrade | disappear | failed-upgrade | abort-install | abort-upgrade | [1-9] | [1-9][0-9]) ;;
*)
	echo "meshnode postremove: unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
