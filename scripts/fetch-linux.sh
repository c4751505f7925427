#!/usr/bin/env bash
# Fetch Debian's stock x86-64 kernel for the Linux boot tests: the bzImage as
# shipped and the vmlinux ELF unpacked from it (which boots through PVH).
#
# Usage: scripts/fetch-linux.sh CACHE_DIR
#
# Writes CACHE_DIR/vmlinuz (bzImage), CACHE_DIR/vmlinux (ELF with the Xen PVH
# note) and CACHE_DIR/config, and prints the paths of the first two, one per
# line. Idempotent: a complete cache is reused without
# asking apt anything (delete CACHE_DIR to move to a newer kernel). Needs
# apt-get, dpkg-deb, readelf and the tool of the payload's compression (xz
# for Debian); network access only to the Debian mirrors, and only once.
#
# Environment:
#   STASIS_LINUX_PKG  kernel package to use instead of the unsigned twin of
#                     the one linux-image-amd64 depends on
#   KVMVM_CACHE       a scripts/kvm-vm.sh cache whose debs/ may already hold
#                     the package (default /var/cache/stasis-kvm-vm)
set -euo pipefail

readonly PROG=fetch-linux
STASIS_LINUX_PKG=${STASIS_LINUX_PKG:-}
KVMVM_CACHE=${KVMVM_CACHE:-/var/cache/stasis-kvm-vm}

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}

# Package lists may be missing or stale on a fresh machine (security updates
# replace .debs); refresh once, as root. Same policy as scripts/kvm-vm.sh.
apt_refresh() {
	[[ ${APT_REFRESHED:-0} = 1 ]] && return 0
	[[ $(id -u) = 0 ]] || die "apt package lists are missing or stale and we are not root to run apt-get update"
	echo "$PROG: apt-get update" >&2
	apt-get -qq update >&2 || die "apt-get update failed"
	APT_REFRESHED=1
}

meta_dependency() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1
}

# Print the kernel package: the unsigned twin of the image linux-image-amd64
# depends on (the same kernel without the Secure Boot signature), as
# scripts/kvm-vm.sh picks its L1 kernel.
kernel_package() {
	if [[ -n $STASIS_LINUX_PKG ]]; then
		echo "$STASIS_LINUX_PKG"
		return
	fi
	local dep
	dep=$(meta_dependency)
	if [[ -z $dep ]]; then
		apt_refresh
		dep=$(meta_dependency)
	fi
	[[ -n $dep ]] || die "cannot resolve linux-image-amd64 with apt-cache"
	if apt-cache show "$dep-unsigned" >/dev/null 2>&1; then
		echo "$dep-unsigned"
	else
		echo "$dep"
	fi
}

# Put a .deb of package $1 into directory $2: reuse one already there or in
# the kvm-vm.sh cache, else apt-get download it.
fetch_deb() {
	local pkg=$1 dir=$2 found
	compgen -G "$dir/${pkg}_*.deb" >/dev/null && return 0
	found=$(compgen -G "$KVMVM_CACHE/debs/${pkg}_*.deb" | head -n1) || true
	# A .deb never changes: a hard link does when both are on one file system.
	if [[ -n $found ]] && { ln -f "$found" "$dir/.${found##*/}.part" 2>/dev/null ||
		cp "$found" "$dir/.${found##*/}.part" 2>/dev/null; }; then
		mv "$dir/.${found##*/}.part" "$dir/${found##*/}"
		return 0
	fi
	echo "$PROG: downloading $pkg" >&2
	# Sandbox user root: apt's _apt user may not write to CACHE_DIR.
	if ! (cd "$dir" && apt-get -qq -o APT::Sandbox::User=root download "$pkg" >&2); then
		apt_refresh
		(cd "$dir" && apt-get -qq -o APT::Sandbox::User=root download "$pkg" >&2) ||
			die "apt-get download $pkg failed"
	fi
}

# bytes FILE OFFSET COUNT: COUNT bytes of FILE from OFFSET on stdout (dd, not
# tail | head, whose SIGPIPE would trip pipefail).
bytes() {
	dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" bs=1M status=none
}

# le32 FILE OFFSET: the little-endian 32-bit value at OFFSET in FILE.
le32() {
	od -An -tu4 --endian=little -j "$2" -N 4 "$1" | tr -d ' '
}

# Write to $2 the vmlinux ELF inside bzImage $1. The setup header says where
# the compressed kernel is (boot.rst: payload_offset at 0x248, relative to the
# protected-mode code at (setup_sects + 1) * 512, and payload_length at
# 0x24c); its magic says how it is compressed. The kernel's build appends the
# uncompressed size as 4 little-endian bytes (gzip's own trailer is the same
# number), which both trims the stream and checks the result.
extract_vmlinux() {
	local bz=$1 out=$2 sects pm off len magic tool pkg trim=4 want got
	[[ $(head -c 4 "$bz" | od -An -tx1 | tr -d ' ') != 7f454c46 ]] ||
		die "$bz is already an ELF, not a bzImage"
	[[ $(bytes "$bz" $((0x202)) 4) = HdrS ]] ||
		die "$bz is not a bzImage (no HdrS)"
	sects=$(od -An -tu1 -j $((0x1f1)) -N 1 "$bz" | tr -d ' ')
	((sects)) || sects=4
	pm=$(((sects + 1) * 512))
	off=$((pm + $(le32 "$bz" $((0x248)))))
	len=$(le32 "$bz" $((0x24c)))
	((len > 4 && off + len <= $(stat -c %s "$bz"))) ||
		die "$bz: payload [$off, +$len) is outside the file"
	magic=$(bytes "$bz" "$off" 6 | od -An -tx1 | tr -d ' \n')
	case $magic in
	fd377a585a00) tool="xz -dc" pkg=xz-utils ;;
	28b52ffd*) tool="zstd -dcq" pkg=zstd ;;
	1f8b*) tool="gzip -dc" pkg=gzip trim=0 ;;
	*) die "$bz: unknown payload compression (magic $magic at offset $off)" ;;
	esac
	command -v "${tool%% *}" >/dev/null ||
		die "${tool%% *} is needed to unpack the kernel (apt-get install $pkg)"
	want=$(le32 "$bz" $((off + len - 4)))
	bytes "$bz" "$off" $((len - trim)) | $tool >"$out" ||
		die "$bz: ${tool%% *} failed on the payload"
	got=$(stat -c %s "$out")
	# The trailer holds the size modulo 2^32.
	((got % 4294967296 == want)) ||
		die "$bz: unpacked $got bytes, the trailer says $want"
}

# Check that $1 is an x86-64 ELF with the Xen note XEN_ELFNOTE_PHYS32_ENTRY
# (type 18), the PVH entry stasis boots through.
check_pvh() {
	command -v readelf >/dev/null || die "readelf is needed (apt-get install binutils)"
	readelf -h "$1" 2>/dev/null | grep -q 'Machine: *Advanced Micro Devices X86-64' ||
		die "$1 is not an x86-64 ELF"
	readelf -n "$1" 2>/dev/null |
		grep -Eq '^ *Xen +0x[0-9a-f]+[[:space:]]+(Unknown note type: \(0x00000012\)|.*PHYS32_ENTRY)' ||
		die "$1 has no Xen PVH entry note (a kernel built without CONFIG_PVH?)"
}

main() {
	(($# == 1)) || {
		echo "usage: fetch-linux.sh CACHE_DIR" >&2
		exit 2
	}
	local cache=$1
	mkdir -p "$cache" || die "cannot create $cache"
	cache=$(realpath "$cache")
	local stamp=$cache/stamp

	# One fetch at a time per cache.
	exec 9>"$cache/.lock"
	flock 9

	if [[ -f $stamp && -f $cache/vmlinuz && -f $cache/vmlinux ]]; then
		printf '%s\n' "$cache/vmlinuz" "$cache/vmlinux"
		return 0
	fi

	local pkg deb
	pkg=$(kernel_package)
	mkdir -p "$cache/debs"
	fetch_deb "$pkg" "$cache/debs"
	deb=$(compgen -G "$cache/debs/${pkg}_*.deb" | head -n1) || true
	[[ -n $deb ]] || die "no .deb of $pkg in $cache/debs after the download"

	local tmp
	tmp=$(mktemp -d "$cache/.build.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" EXIT
	# Only /boot: the module tree is most of the package and not needed.
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/*' ||
		die "cannot unpack /boot of $deb"
	local vmlinuz
	vmlinuz=$(compgen -G "$tmp/boot/vmlinuz-*" | head -n1) || true
	[[ -n $vmlinuz ]] || die "$pkg has no /boot/vmlinuz-*"
	local release=${vmlinuz##*/vmlinuz-}

	extract_vmlinux "$vmlinuz" "$tmp/vmlinux"
	check_pvh "$tmp/vmlinux"
	cp "$tmp/boot/config-$release" "$cache/config" 2>/dev/null || true
	mv "$vmlinuz" "$cache/vmlinuz"
	mv "$tmp/vmlinux" "$cache/vmlinux"
	printf 'package=%s\nrelease=%s\n' "${deb##*/}" "$release" >"$stamp"
	rm -rf "$tmp"
	trap - EXIT
	# The .deb is kept (70 MB) so that a deleted vmlinux is rebuilt offline.
	echo "$PROG: $cache holds Linux $release from ${deb##*/}" >&2
	printf '%s\n' "$cache/vmlinuz" "$cache/vmlinux"
}

main "$@"
