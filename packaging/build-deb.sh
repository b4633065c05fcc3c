#!/usr/bin/env bash
# Builds the hbscope .deb: the release binary, then the man page and the shell
# completions made by that binary (`hbscope man`, `hbscope completions`) into
# the target directory where Cargo.toml's [package.metadata.deb] assets expect
# them, then `cargo deb --no-build`. Prints the .deb's path on the last line.
#
#   packaging/build-deb.sh               build it (installs cargo-deb if missing)
#   packaging/build-deb.sh --tools-only  only install cargo-deb (CI's setup)
#
# Needs dpkg-dev (dpkg-shlibdeps works out the libpcap dependency) and
# libpcap-dev; .ci/setup installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the unit's install path and the maintainer-script fragments come
# from cargo-deb, so a new version is a reviewed change. Building it takes
# ~2.5 min on 2 cores.
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
	echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION (cargo install, ~2.5 min)" >&2
	# Its own temporary target directory, not the project's.
	env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
if [ "${1:-}" = "--tools-only" ]; then
	exit 0
fi

target_dir=$(cargo metadata --format-version 1 --no-deps |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [ -z "$target_dir" ]; then
	echo "build-deb: cargo metadata did not name the target directory" >&2
	exit 1
fi
cargo build --release --locked --bin hbscope >&2
bin="$target_dir/release/hbscope"
out="$target_dir/release/packaging"
rm -rf "$out"
mkdir -p "$out"
"$bin" man | gzip -9n >"$out/hbscope.1.gz"
"$bin" completions bash >"$out/hbscope.bash"
"$bin" completions zsh >"$out/_hbscope"
"$bin" completions fish >"$out/hbscope.fish"
cargo deb --no-build --locked --output "$target_dir/debian/" >&2
ls -t "$target_dir"/debian/hbscope_*.deb | head -n 1
