#!/bin/sh
# packaging/test.sh (make test-packaging): build the meshnode deb and rpm for
# amd64 and arm64 and the darwin binaries, check what the packages hold, then
# install, upgrade, remove and purge them in scratch roots with real dpkg and
# rpm, and verify the systemd units. Needs root; prints SKIP otherwise. The
# tools it needs, and how the scratch roots work: packaging/README.md.
#
# Nothing outside its temporary directory is touched: dpkg runs with --root
# and --force-script-chrootless, so the maintainer scripts get DPKG_ROOT and
# create the coordinator user with useradd --prefix inside the scratch root;
# systemctl is a logging stand-in first on PATH, and "systemd running" means
# that <root>/run/systemd/system exists, as the scripts test.
set -eu

# skip_or_fail: on a developer's machine a missing part skips; under CI=true
# it fails, since CI installs every part and a missing one is a broken step.
skip_or_fail() {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: CI=true and $1" >&2
		exit 1
	fi
	echo "SKIP: $1"
}

if [ "$(id -u)" -ne 0 ]; then
	skip_or_fail "test-packaging needs root (dpkg --root, useradd --prefix, root-owned files in a scratch root); CI runs it as root"
	exit 0
fi

start=$(date +%s)
repo=$(cd "$(dirname "$0")/.." && pwd)
MAKE=${MAKE:-make}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
ok() { echo "ok   $*"; }

missing=
for tool in go dpkg dpkg-deb rpm useradd userdel od; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] || fail "missing tools:$missing; packaging/README.md lists the apt packages"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshnode-pkgtest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# run LOG CMD...: run CMD with its output in LOG; print LOG and fail if it fails.
run() {
	log=$1
	shift
	if ! "$@" >"$log" 2>&1 </dev/null; then
		cat "$log" >&2
		fail "$*"
	fi
}

# expect_eq GOT WANT WHAT
expect_eq() {
	[ "$1" = "$2" ] || fail "$3: got
$1
want
$2"
}

# ---------------------------------------------------------------- build
# Fixed identities, so that every assertion below is exact. v2 upgrades v1.
V1=v1.2.3-4-gabc1234 P1=1.2.3+4.gabc1234
V2=v1.2.4 P2=1.2.4
COMMIT=abc1234 DATE=2025-01-02T03:04:05Z
run "$tmp/build-v1.log" "$MAKE" -C "$repo" --no-print-directory deb rpm \
	DIST="$tmp/v1" VERSION=$V1 COMMIT=$COMMIT DATE=$DATE
run "$tmp/build-v2.log" "$MAKE" -C "$repo" --no-print-directory deb rpm \
	DIST="$tmp/v2" VERSION=$V2 COMMIT=$COMMIT DATE=$DATE ARCHES=amd64
ok "make deb rpm: amd64 and arm64 packages of $P1, amd64 of $P2"

# The package versions sort as releases must.
for pair in "1.2.3~rc.1 1.2.3~rc.1+4.gabc1234" "1.2.3~rc.1+4.gabc1234 1.2.3" \
	"1.2.3 $P1" "$P1 $P1.dirty" "$P1.dirty $P2" "0.0.0~dev+abc1234 0.0.1"; do
	set -- $pair
	dpkg --compare-versions "$1" lt "$2" || fail "dpkg orders $1 after $2"
	[ "$(rpm --eval "%{lua: print(rpm.vercmp('$1', '$2'))}")" = -1 ] || fail "rpm orders $1 after $2"
done
ok "package versions order the same in dpkg and rpm"

# ------------------------------------------------------------ contents
# elf_machine FILE: e_machine of an ELF file (3e 00 x86-64, b7 00 aarch64).
elf_machine() { od -An -tx1 -j18 -N2 "$1" | tr -d ' \n'; }

deb_files="drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/meshnode/
-rw-r--r-- root/root ./etc/meshnode/coordinator.yaml
-rw------- root/root ./etc/meshnode/meshnode.yaml
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/meshnode
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/systemd/
drwxr-xr-x root/root ./usr/lib/systemd/system/
-rw-r--r-- root/root ./usr/lib/systemd/system/meshnode-coordinator.service
-rw-r--r-- root/root ./usr/lib/systemd/system/meshnode.service
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/meshnode/
drwxr-xr-x root/root ./usr/share/meshnode/grafana/
-rw-r--r-- root/root ./usr/share/meshnode/grafana/meshnode.json
drwxr-xr-x root/root ./var/
drwxr-xr-x root/root ./var/lib/
drwx------ root/root ./var/lib/meshnode-coordinator/
drwx------ root/root ./var/lib/meshnode/"
conffiles="/etc/meshnode/coordinator.yaml
/etc/meshnode/meshnode.yaml"

for arch in amd64 arm64; do
	deb="$tmp/v1/meshnode_${P1}_$arch.deb"
	[ -f "$deb" ] || fail "no $deb; built: $(ls "$tmp/v1")"
	expect_eq "$(dpkg-deb -f "$deb" Package Version Architecture)" \
		"Package: meshnode
Version: $P1
Architecture: $arch" "$deb control fields"
	expect_eq "$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' | LC_ALL=C sort)" \
		"$(printf '%s\n' "$deb_files" | LC_ALL=C sort)" "$deb files, modes and owners"
	expect_eq "$(dpkg-deb -I "$deb" conffiles)" "$conffiles" "$deb conffiles"
	ctl="$tmp/control-$arch"
	dpkg-deb -e "$deb" "$ctl"
	expect_eq "$(cd "$ctl" && ls)" "conffiles
control
md5sums
postinst
postrm
prerm" "$deb control files"
	for pair in postinst:postinstall prerm:preremove postrm:postremove; do
		cmp "$ctl/${pair%%:*}" "$repo/packaging/scripts/${pair#*:}.sh" ||
			fail "$deb ${pair%%:*} differs from packaging/scripts/${pair#*:}.sh"
		[ -x "$ctl/${pair%%:*}" ] || fail "$deb ${pair%%:*} is not executable"
	done
	x="$tmp/x-deb-$arch"
	dpkg-deb -x "$deb" "$x"
	for f in meshnode.service meshnode-coordinator.service; do
		cmp "$x/usr/lib/systemd/system/$f" "$repo/packaging/systemd/$f" ||
			fail "$deb /usr/lib/systemd/system/$f differs from packaging/systemd/$f"
	done
	for f in meshnode.yaml coordinator.yaml; do
		cmp "$x/etc/meshnode/$f" "$repo/packaging/config/$f" || fail "$deb /etc/meshnode/$f differs from packaging/config/$f"
	done
	cmp "$x/usr/share/meshnode/grafana/meshnode.json" "$repo/packaging/grafana/meshnode.json" ||
		fail "$deb /usr/share/meshnode/grafana/meshnode.json differs from packaging/grafana/meshnode.json"
	want=3e00
	[ $arch = arm64 ] && want=b700
	expect_eq "$(elf_machine "$x/usr/bin/meshnode")" $want "$deb: ELF machine of /usr/bin/meshnode"
done
ok "deb contents: files, modes, conffiles, maintainer scripts, ELF architecture"

rpm_files="-rw------- root/root flags=cn /etc/meshnode/meshnode.yaml
-rw-r--r-- root/root flags=cn /etc/meshnode/coordinator.yaml
-rw-r--r-- root/root flags= /usr/lib/systemd/system/meshnode-coordinator.service
-rw-r--r-- root/root flags= /usr/lib/systemd/system/meshnode.service
-rw-r--r-- root/root flags= /usr/share/meshnode/grafana/meshnode.json
-rwxr-xr-x root/root flags= /usr/bin/meshnode
drwx------ root/root flags= /var/lib/meshnode
drwx------ root/root flags= /var/lib/meshnode-coordinator
drwxr-xr-x root/root flags= /etc/meshnode"
rpmq() { rpm -qp --nosignature "$@" 2>/dev/null; }

for arch in amd64 arm64; do
	rarch=x86_64
	[ $arch = arm64 ] && rarch=aarch64
	pkg="$tmp/v1/meshnode-$P1-1.$rarch.rpm"
	[ -f "$pkg" ] || fail "no $pkg; built: $(ls "$tmp/v1")"
	expect_eq "$(rpmq --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH}' "$pkg")" \
		"meshnode $P1 1 $rarch" "$pkg name, version, release, arch"
	expect_eq "$(rpmq --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} flags=%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$pkg" | LC_ALL=C sort)" \
		"$(printf '%s\n' "$rpm_files" | LC_ALL=C sort)" "$pkg files, modes, owners and config flags"
	expect_eq "$(rpmq --configfiles "$pkg")" "$conffiles" "$pkg config files"
	expect_eq "$(rpmq --qf '%{PREIN}|%{POSTINPROG}|%{PREUNPROG}|%{POSTUNPROG}' "$pkg")" \
		"(none)|/bin/sh|/bin/sh|/bin/sh" "$pkg scriptlet interpreters"
	for pair in POSTIN:postinstall PREUN:preremove POSTUN:postremove; do
		expect_eq "$(rpmq --qf "%{${pair%%:*}}" "$pkg")" "$(cat "$repo/packaging/scripts/${pair#*:}.sh")" \
			"$pkg %{${pair%%:*}} against packaging/scripts/${pair#*:}.sh"
	done
	# Unpack with rpm itself into a scratch root: the binary's architecture.
	x="$tmp/x-rpm-$arch"
	mkdir -p "$x"
	run "$tmp/rpm-x.log" rpm --root "$x" --dbpath /var/lib/rpm --initdb
	run "$tmp/rpm-x.log" rpm --root "$x" --dbpath /var/lib/rpm -i --nodeps --noscripts --ignorearch "$pkg"
	want=3e00
	[ $arch = arm64 ] && want=b700
	expect_eq "$(elf_machine "$x/usr/bin/meshnode")" $want "$pkg: ELF machine of /usr/bin/meshnode"
done
ok "rpm contents: files, modes, %config(noreplace), scriptlets, ELF architecture"

# --------------------------------------------------- deb install lifecycle
shim="$tmp/shim"
calls="$tmp/systemctl.calls"
mkdir -p "$shim"
# The stand-in fails as the real one does where systemd is not running, and
# on demand (SYSTEMCTL_FAIL=1) to show that a failed restart or stop never
# fails the package operation.
cat >"$shim/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$calls"
if [ ! -d "\${DPKG_ROOT:-}/run/systemd/system" ]; then
	echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
	exit 1
fi
[ "\${SYSTEMCTL_FAIL:-}" != 1 ] || { echo "Job failed (SYSTEMCTL_FAIL)" >&2; exit 1; }
exit 0
EOF
chmod 0755 "$shim/systemctl"

# new_root DIR: an empty system with root in its user database.
new_root() {
	mkdir -p "$1/etc" "$1/var/lib/dpkg/info" "$1/var/lib/dpkg/updates" "$1/var/log"
	: >"$1/var/lib/dpkg/status"
	: >"$1/var/lib/dpkg/available"
	echo 'root:x:0:0:root:/root:/bin/sh' >"$1/etc/passwd"
	echo 'root:x:0:' >"$1/etc/group"
	echo 'root:*:19000:0:99999:7:::' >"$1/etc/shadow"
	echo 'root:*::' >"$1/etc/gshadow"
	chmod 0640 "$1/etc/shadow" "$1/etc/gshadow"
	if [ -f /etc/login.defs ]; then cp /etc/login.defs "$1/etc/"; fi
}

droot="$tmp/deb-root"
new_root "$droot"
dpkg_root() {
	: >"$calls"
	PATH="$shim:$PATH" dpkg --root="$droot" --force-script-chrootless "$@"
}
expect_calls() { expect_eq "$(cat "$calls")" "$1" "systemctl calls, $2"; }
status() { dpkg-query --root="$droot" -W -f='${db:Status-Abbrev}${Version}' meshnode 2>/dev/null || true; }
version_line() { echo "meshnode $1 (commit $COMMIT, built $DATE)"; }
user_lines() { grep -c '^meshnode-coordinator:' "$droot/etc/$1" || true; }
mode() { stat -c '%a %U:%G' "$1"; }

# 1. First install where systemd is not running (a container, a chroot).
run "$tmp/dpkg.log" dpkg_root -i "$tmp/v1/meshnode_${P1}_amd64.deb"
expect_calls "" "first install without systemd"
expect_eq "$(status)" "ii $P1" "dpkg status after install"
expect_eq "$("$droot/usr/bin/meshnode" version)" "$(version_line $V1)" "installed meshnode version"
entry=$(grep '^meshnode-coordinator:' "$droot/etc/passwd")
expect_eq "$(echo "$entry" | cut -d: -f6-)" "/var/lib/meshnode-coordinator:/usr/sbin/nologin" "coordinator user home and shell"
uid=$(echo "$entry" | cut -d: -f3)
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || fail "coordinator uid $uid is not a system uid"
for db in passwd group shadow gshadow; do
	expect_eq "$(user_lines $db)" 1 "meshnode-coordinator entries in /etc/$db"
done
expect_eq "$(mode "$droot/etc/meshnode/meshnode.yaml")" "600 root:root" "node config mode"
expect_eq "$(mode "$droot/etc/meshnode/coordinator.yaml")" "644 root:root" "coordinator config mode"
expect_eq "$(mode "$droot/var/lib/meshnode")" "700 root:root" "node state dir mode"
expect_eq "$(mode "$droot/var/lib/meshnode-coordinator")" "700 root:root" "coordinator state dir mode"
ok "deb install without systemd: no systemctl call, user created, files in place, meshnode version runs"

# 2. Upgrade while systemd runs: daemon-reload and try-restart, never a stop
# or disable; the admin's config edit and the node's key survive.
mkdir -p "$droot/run/systemd/system"
echo "#edited: by the test" >>"$droot/etc/meshnode/meshnode.yaml"
edited=$(cat "$droot/etc/meshnode/meshnode.yaml")
echo "private key" >"$droot/var/lib/meshnode/private.key"
run "$tmp/dpkg.log" dpkg_root -i "$tmp/v2/meshnode_${P2}_amd64.deb"
expect_calls "daemon-reload
try-restart meshnode.service meshnode-coordinator.service" "upgrade with systemd running"
expect_eq "$(status)" "ii $P2" "dpkg status after upgrade"
expect_eq "$("$droot/usr/bin/meshnode" version)" "$(version_line $V2)" "upgraded meshnode version"
expect_eq "$(cat "$droot/etc/meshnode/meshnode.yaml")" "$edited" "edited conffile after upgrade"
[ -z "$(find "$droot/etc/meshnode" -name '*.dpkg-*')" ] || fail "upgrade left $(find "$droot/etc/meshnode" -name '*.dpkg-*')"
expect_eq "$(cat "$droot/var/lib/meshnode/private.key")" "private key" "node state after upgrade"
expect_eq "$(user_lines passwd)" 1 "meshnode-coordinator entries after upgrade"
ok "deb upgrade: try-restart, no stop or disable, conffile edit and state kept"

# 3. A restart that fails does not fail the upgrade (reinstall = upgrade).
export SYSTEMCTL_FAIL=1
run "$tmp/dpkg.log" dpkg_root -i "$tmp/v2/meshnode_${P2}_amd64.deb"
unset SYSTEMCTL_FAIL
grep -q "restarting meshnode.service meshnode-coordinator.service failed" "$tmp/dpkg.log" ||
	fail "no warning about the failed restart in: $(cat "$tmp/dpkg.log")"
expect_eq "$(status)" "ii $P2" "dpkg status after an upgrade whose restart failed"
ok "deb upgrade with a failing systemctl: warns, package configured"

# 4. Remove: stop and disable; conffiles, state and user stay for a purge.
run "$tmp/dpkg.log" dpkg_root -r meshnode
expect_calls "disable --now meshnode.service meshnode-coordinator.service
daemon-reload" "remove with systemd running"
expect_eq "$(status)" "rc $P2" "dpkg status after remove"
for f in usr/bin/meshnode usr/lib/systemd/system/meshnode.service usr/lib/systemd/system/meshnode-coordinator.service; do
	[ ! -e "$droot/$f" ] || fail "remove left /$f"
done
expect_eq "$(cat "$droot/etc/meshnode/meshnode.yaml")" "$edited" "conffile after remove"
expect_eq "$(cat "$droot/var/lib/meshnode/private.key")" "private key" "node state after remove"
expect_eq "$(user_lines passwd)" 1 "meshnode-coordinator entries after remove"
ok "deb remove: disable --now, conffiles, state and user kept"

# 5. Purge: state, conffiles and the user go.
run "$tmp/dpkg.log" dpkg_root -P meshnode
expect_calls "daemon-reload" "purge with systemd running"
expect_eq "$(status)" "" "dpkg status after purge"
for d in etc/meshnode var/lib/meshnode var/lib/meshnode-coordinator; do
	[ ! -e "$droot/$d" ] || fail "purge left /$d: $(ls -la "$droot/$d")"
done
for db in passwd group shadow gshadow; do
	expect_eq "$(user_lines $db)" 0 "meshnode-coordinator entries in /etc/$db after purge"
done
ok "deb purge: state dirs, conffiles and user removed"

# 6. The whole cycle where systemd is not running: nothing calls systemctl.
rm -r "$droot/run/systemd"
run "$tmp/dpkg.log" dpkg_root -i "$tmp/v1/meshnode_${P1}_amd64.deb"
expect_calls "" "install without systemd"
run "$tmp/dpkg.log" dpkg_root -i "$tmp/v2/meshnode_${P2}_amd64.deb"
expect_calls "" "upgrade without systemd"
run "$tmp/dpkg.log" dpkg_root -r meshnode
expect_calls "" "remove without systemd"
run "$tmp/dpkg.log" dpkg_root -P meshnode
expect_calls "" "purge without systemd"
expect_eq "$(status)" "" "dpkg status after purge without systemd"
ok "deb install, upgrade, remove, purge without systemd: no systemctl call, no failure"

# --------------------------------------------------- rpm install lifecycle
rroot="$tmp/rpm-root"
mkdir -p "$rroot"
rpm_root() { rpm --root "$rroot" --dbpath /var/lib/rpm "$@"; }
run "$tmp/rpm.log" rpm_root --initdb
# Files only: rpm runs scriptlets chrooted into the root, which has no shell;
# the scriptlets run below against the same kind of scratch root as dpkg's.
run "$tmp/rpm.log" rpm_root -i --nodeps --noscripts "$tmp/v1/meshnode-$P1-1.x86_64.rpm"
expect_eq "$("$rroot/usr/bin/meshnode" version)" "$(version_line $V1)" "meshnode version from the rpm"
expect_eq "$(mode "$rroot/etc/meshnode/meshnode.yaml")" "600 root:root" "node config mode (rpm)"
echo "#edited: by the test" >>"$rroot/etc/meshnode/meshnode.yaml"
edited=$(cat "$rroot/etc/meshnode/meshnode.yaml")
run "$tmp/rpm.log" rpm_root -U --nodeps --noscripts "$tmp/v2/meshnode-$P2-1.x86_64.rpm"
expect_eq "$(rpm_root -q meshnode 2>/dev/null)" "meshnode-$P2-1.x86_64" "installed rpm after upgrade"
expect_eq "$("$rroot/usr/bin/meshnode" version)" "$(version_line $V2)" "meshnode version after rpm upgrade"
expect_eq "$(cat "$rroot/etc/meshnode/meshnode.yaml")" "$edited" "edited config after rpm upgrade"
[ -z "$(find "$rroot/etc/meshnode" -name '*.rpm*')" ] || fail "rpm upgrade left $(find "$rroot/etc/meshnode" -name '*.rpm*')"
run "$tmp/rpm.log" rpm_root -e --nodeps --noscripts meshnode
[ ! -e "$rroot/usr/bin/meshnode" ] || fail "rpm -e left /usr/bin/meshnode"
expect_eq "$(cat "$rroot/etc/meshnode/meshnode.yaml.rpmsave")" "$edited" "edited config saved by rpm -e"
ok "rpm install, upgrade (config edit kept), erase (edit saved as .rpmsave)"

# The rpm's own scriptlets, with rpm's arguments, against a scratch root.
sroot="$tmp/rpm-scripts-root"
new_root "$sroot"
for s in POSTIN PREUN POSTUN; do
	rpmq --qf "%{$s}" "$tmp/v2/meshnode-$P2-1.x86_64.rpm" >"$tmp/$s.sh"
done
# scriptlet NAME ARG: run it as rpm would, with DPKG_ROOT naming the root.
scriptlet() {
	: >"$calls"
	run "$tmp/scriptlet.log" env PATH="$shim:$PATH" DPKG_ROOT="$sroot" sh "$tmp/$1.sh" "$2"
}
scriptlet POSTIN 1
expect_calls "" "rpm %post 1 without systemd"
expect_eq "$(grep -c '^meshnode-coordinator:' "$sroot/etc/passwd")" 1 "coordinator user after rpm %post"
mkdir -p "$sroot/run/systemd/system"
scriptlet POSTIN 1
expect_calls "daemon-reload" "rpm %post 1 (install) with systemd"
expect_eq "$(grep -c '^meshnode-coordinator:' "$sroot/etc/passwd")" 1 "coordinator user after a second %post"
scriptlet POSTIN 2
expect_calls "daemon-reload
try-restart meshnode.service meshnode-coordinator.service" "rpm %post 2 (upgrade)"
scriptlet PREUN 1
expect_calls "" "rpm %preun 1 (upgrade)"
scriptlet POSTUN 1
expect_calls "" "rpm %postun 1 (upgrade)"
mkdir -p "$sroot/var/lib/meshnode"
echo "private key" >"$sroot/var/lib/meshnode/private.key"
scriptlet PREUN 0
expect_calls "disable --now meshnode.service meshnode-coordinator.service" "rpm %preun 0 (erase)"
scriptlet POSTUN 0
expect_calls "daemon-reload" "rpm %postun 0 (erase)"
[ -f "$sroot/var/lib/meshnode/private.key" ] || fail "rpm %postun 0 removed the node state"
expect_eq "$(grep -c '^meshnode-coordinator:' "$sroot/etc/passwd")" 1 "coordinator user after rpm erase"
ok "rpm scriptlets: install, upgrade (try-restart, no disable), erase (disable --now, state kept)"

# ------------------------------------------------------------ systemd units
if ! command -v systemd-analyze >/dev/null 2>&1; then
	skip_or_fail "systemd-analyze not found, units not verified (apt-get install systemd)"
else
	units="$tmp/units"
	mkdir -p "$units"
	# The probe tells a container where systemd-analyze cannot run from a
	# unit that is wrong.
	printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$units/probe.service"
	if ! systemd-analyze verify "$units/probe.service" >"$tmp/probe.log" 2>&1 || [ -s "$tmp/probe.log" ]; then
		echo "SKIP: systemd-analyze verify cannot run here, units not verified: $(cat "$tmp/probe.log")"
	else
		# verify checks that ExecStart exists: point it at the built binary.
		for u in meshnode meshnode-coordinator; do
			sed "s#^ExecStart=/usr/bin/meshnode #ExecStart=$tmp/v1/linux-amd64/meshnode #" \
				"$repo/packaging/systemd/$u.service" >"$units/$u.service"
			grep -q "^ExecStart=$tmp/v1/linux-amd64/meshnode " "$units/$u.service" ||
				fail "$u.service: ExecStart is not /usr/bin/meshnode"
		done
		# verify exits 0 on unknown keys and bad values; any output is a finding.
		if ! systemd-analyze verify "$units/meshnode.service" "$units/meshnode-coordinator.service" \
			>"$tmp/verify.log" 2>&1 || [ -s "$tmp/verify.log" ]; then
			fail "systemd-analyze verify: $(cat "$tmp/verify.log")"
		fi
		ok "systemd-analyze verify: both units clean"
		# Exposure (0-10, lower is better) as systemd-analyze security rates
		# it; --threshold is in tenths. A hardening regression fails here.
		for pair in meshnode:25 meshnode-coordinator:20; do
			u=${pair%%:*} max=${pair#*:}
			if ! systemd-analyze security --offline=yes --threshold="$max" "$units/$u.service" >"$tmp/security.log" 2>&1; then
				tail -n 3 "$tmp/security.log" >&2
				fail "$u.service exposure is above $max/10"
			fi
			ok "systemd-analyze security: $(tail -n 1 "$tmp/security.log" | sed 's/^→ //')"
		done
	fi
fi

# ------------------------------------------------------------ darwin
if ! "$MAKE" -C "$repo" --no-print-directory darwin DIST="$tmp/darwin" \
	VERSION=$V1 COMMIT=$COMMIT DATE=$DATE >"$tmp/darwin.log" 2>&1; then
	cat "$tmp/darwin.log" >&2
	fail "make darwin: the darwin build fails (see the package named above)"
fi
# Mach-O 64-bit magic, then the CPU type: 0x01000007 x86_64, 0x0100000c arm64.
expect_eq "$(od -An -tx1 -N8 "$tmp/darwin/meshnode_darwin_amd64" | tr -d ' \n')" cffaedfe07000001 "darwin amd64 Mach-O header"
expect_eq "$(od -An -tx1 -N8 "$tmp/darwin/meshnode_darwin_arm64" | tr -d ' \n')" cffaedfe0c000001 "darwin arm64 Mach-O header"
ok "make darwin: Mach-O binaries for amd64 and arm64"

# ------------------------------------------------------------ static files
run "$tmp/gotest.log" sh -c "cd '$repo' && ${GO:-go} test -count=1 ./packaging/"
ok "go test ./packaging/: config templates, units, launchd plist, version mapping"

echo "PASS: test-packaging ($(($(date +%s) - start))s)"
