#!/usr/bin/env bash
# Installs the Debian packages stasis needs to build, test and benchmark,
# but only those that are missing, so `make` stays quick once set up.
set -euo pipefail

# Each package and why (the README's dependency table says the same):
packages=(
	build-essential      # gcc, make: the compiler for stasis and the guest kit
	meson ninja-build pkg-config # the build
	libjson-c-dev        # JSON config files and control-API bodies
	libmicrohttpd-dev    # HTTP/1.1 server for the control API socket
	libxxhash-dev        # xxh3 checksums on every snapshot record
	libseccomp-dev       # per-thread system-call filters (docs/security.md)
	libgnutls28-dev      # HMAC-SHA256 for signed snapshots, TLS for migration (runtime on every Debian)
	openssl              # tests: throwaway CAs and certificates for the TLS migration test
	libzstd-dev          # zstd compression of snapshot memory chunks
	liblz4-dev           # lz4 compression of snapshot memory chunks
	libcmocka-dev        # unit tests
	clang libclang-rt-14-dev # libFuzzer targets and sanitizer runtimes
	clang-format         # `make format` and the format check
	curl                 # documentation examples (curl --unix-socket)
	python3              # tests: the /dev/kvm probe, console socket client, chunk tables
	python3-yaml         # tests: reading docs/api.yaml to check it against the server
	bash-completion      # tests: running the bash completion as bash would
	groff-base           # tests: the man pages must format without warnings
	qemu-system-x86      # the peer VMM for the guest kit and benchmarks
	fio                  # bench/virtio.sh: the host's own 4 KiB random IOPS
	busybox-static       # userland of the nested test VM (hosts without /dev/kvm)
	cpio xz-utils zstd   # initramfs building and kernel unpacking in tests
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
