#!/bin/sh
# Builds the binary the packages ship and generates the files they ship that
# are not in the repository, into target/assets/:
#   vhostfix              the release binary, linked against glibc 2.17 (cargo
#                         zigbuild, see below) and stripped; both the .deb and
#                         the .rpm package this file
#   man/*.1.gz, *.5.gz    man pages (vhostfix man --dir), compressed
#   completions/          bash, zsh and fish completions (vhostfix completions)
#   doc/README.md         the project README (or a short stand-in without one)
# Run from anywhere before `cargo deb` and `cargo generate-rpm`.
#
# The portable build: `cargo zigbuild` links with zig against glibc 2.17's
# symbol versions, so the binary runs on any x86_64 glibc >= 2.17 (CentOS 7,
# RHEL/Rocky 8, Debian 11, ...). Needs zig (`pip install ziglang`; cargo-zigbuild
# also finds it as `python3 -m ziglang`) and `cargo install --locked cargo-zigbuild`.
# A plain `cargo build --release` (target/release/vhostfix) is for development:
# it links against the build host's glibc.
set -eu
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
glibc=2.17
out=target/assets
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
  echo "build-assets.sh: cargo-zigbuild is missing: cargo install --locked cargo-zigbuild (and pip install ziglang)" >&2
  exit 1
fi
cargo zigbuild --release --locked --target "$target.$glibc" >&2
bin=target/$target/release/vhostfix
rm -rf "$out"
mkdir -p "$out/man" "$out/completions" "$out/doc"
strip -o "$out/vhostfix" "$bin"

"$out/vhostfix" man --dir "$out/man"
gzip -9n "$out"/man/*.1 "$out"/man/*.5

"$out/vhostfix" completions bash >"$out/completions/vhostfix"
"$out/vhostfix" completions zsh >"$out/completions/_vhostfix"
"$out/vhostfix" completions fish >"$out/completions/vhostfix.fish"

if [ -f README.md ]; then
  cp README.md "$out/doc/README.md"
else
  printf '# vhostfix\n\n%s\n\nInstallation: see INSTALL.md in this directory; usage: man vhostfix.\n' \
    "$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)" >"$out/doc/README.md"
fi
echo "build-assets.sh: wrote $(find "$out" -type f | wc -l) files into $out (vhostfix for glibc >= $glibc)" >&2
