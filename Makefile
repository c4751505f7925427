# The front door: `make` builds, `make check` runs every test, `make demo`
# boots the bundled guests. Meson and Ninja do the real work in build*/.

BUILD ?= build
SAN_BUILD ?= build-san
MESON_OPTS ?= -Dwerror=true

.PHONY: all deps check demo install format format-check bench clean

all: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

# The test suite runs against an ASan+UBSan build of stasis.
$(SAN_BUILD)/build.ninja:
	meson setup $(SAN_BUILD) $(MESON_OPTS) -Db_sanitize=address,undefined \
		-Db_lundef=false

# It also builds the release build, whose seccomp filters one KVM test
# runs (tests/integration/kvm/seccomp_release.sh).
check: deps $(SAN_BUILD)/build.ninja $(BUILD)/build.ninja
	ninja -C $(SAN_BUILD)
	ninja -C $(BUILD)
	tests/run-all.sh $(SAN_BUILD)

# `make install [PREFIX=/usr] [DESTDIR=/tmp/root]`: meson install of the
# release build (binary, man pages, systemd unit, bash completion);
# meson reads DESTDIR from the environment.
PREFIX ?= /usr/local
install: all
	meson configure $(BUILD) --prefix=$(PREFIX)
	DESTDIR=$(DESTDIR) meson install -C $(BUILD)

demo: all
	scripts/demo.sh $(BUILD)

bench: all
	bench/boot.sh $(BUILD)
	bench/snapshot.sh $(BUILD)
	bench/virtio.sh $(BUILD)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
