#!/bin/sh
# Generates the files the packages ship that are not in the repository, into
# target/assets/ (from the release binary, so they always match it):
#   man/*.1.gz, *.5.gz    man pages (vhostfix man --dir), compressed
#   completions/          bash, zsh and fish completions (vhostfix completions)
#   vhostfix              the release binary without symbols (for the .rpm;
#                         cargo deb strips its own copy)
#   doc/README.md         the project README (or a short stand-in without one)
# Run from anywhere after `cargo build --release`, before `cargo deb` and
# `cargo generate-rpm`.
set -eu
cd "$(dirname "$0")/.."
bin=target/release/vhostfix
out=target/assets
if [ ! -x "$bin" ]; then
  echo "build-assets.sh: $bin is missing: run 'cargo build --release' first" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/man" "$out/completions" "$out/doc"

"$bin" man --dir "$out/man"
gzip -9n "$out"/man/*.1 "$out"/man/*.5

"$bin" completions bash >"$out/completions/vhostfix"
"$bin" completions zsh >"$out/completions/_vhostfix"
"$bin" completions fish >"$out/completions/vhostfix.fish"

strip -o "$out/vhostfix" "$bin"

if [ -f README.md ]; then
  cp README.md "$out/doc/README.md"
else
  printf '# vhostfix\n\n%s\n\nInstallation: see INSTALL.md in this directory; usage: man vhostfix.\n' \
    "$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)" >"$out/doc/README.md"
fi
echo "build-assets.sh: wrote $(find "$out" -type f | wc -l) files into $out" >&2
