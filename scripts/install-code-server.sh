#!/usr/bin/env bash
# Installs code-server 4.100.3 (= VS Code 1.100.3, needs Node 20) into .cache/code-server for the
# end-to-end tests in test/e2e/. Offline apart from the npm registry: @vscode/ripgrep's postinstall
# would download ripgrep from GitHub, so its cache is seeded with Debian's /usr/bin/rg first.
# Idempotent: does nothing when the pinned version is already installed.
# Needs the Debian packages: ripgrep libkrb5-dev build-essential pkg-config python3 (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

CODE_SERVER_VERSION="4.100.3"
INSTALL_DIR="$PWD/.cache/code-server"
BIN="$INSTALL_DIR/node_modules/.bin/code-server"
PKG_JSON="$INSTALL_DIR/node_modules/code-server/package.json"

installed_version() {
  [ -f "$PKG_JSON" ] && node -p "require(process.argv[1]).version" "$PKG_JSON" 2>/dev/null || true
}

if [ -x "$BIN" ] && [ "$(installed_version)" = "$CODE_SERVER_VERSION" ] \
  && [ -e "$INSTALL_DIR/node_modules/code-server/lib/vscode/node_modules.asar" ]; then
  echo "code-server $CODE_SERVER_VERSION already installed in .cache/code-server"
  exit 0
fi

if ! command -v rg >/dev/null 2>&1; then
  echo "install-code-server: ripgrep (rg) is missing: apt-get install ripgrep" >&2
  exit 1
fi

# @vscode/ripgrep looks for this archive before it tries GitHub; it must hold one file named rg.
RG_CACHE_DIR="$(node -p 'require("os").tmpdir()')/vscode-ripgrep-cache-1.15.11"
RG_ARCHIVE="$RG_CACHE_DIR/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -s "$RG_ARCHIVE" ]; then
  mkdir -p "$RG_CACHE_DIR"
  staging="$(mktemp -d)"
  cp "$(command -v rg)" "$staging/rg"
  tar -czf "$RG_ARCHIVE.partial" -C "$staging" rg
  mv "$RG_ARCHIVE.partial" "$RG_ARCHIVE"
  rm -rf "$staging"
fi

mkdir -p "$INSTALL_DIR"
if [ ! -f "$INSTALL_DIR/package.json" ]; then
  printf '{ "name": "code-server-cache", "private": true }\n' > "$INSTALL_DIR/package.json"
fi
started=$(date +%s)
# code-server's postinstall runs `npm install` in lib/vscode (and its extensions), which builds the native
# modules (node-pty, spdlog, argon2...). npm 11 skips dependency install scripts unless allowed, and that
# nested install is a project of its own that no allowScripts field of ours reaches: so this one install of
# a pinned version into a cache folder allows them all. node-pty's build runs `npx node-gyp`, which needs
# npm_config_yes; a failed postinstall rolls the whole package back.
(cd "$INSTALL_DIR" && npm_config_yes=true npm install --no-audit --no-fund --unsafe-perm \
  --dangerously-allow-all-scripts "code-server@$CODE_SERVER_VERSION")
if [ "$(installed_version)" != "$CODE_SERVER_VERSION" ] || [ ! -x "$BIN" ] \
  || [ ! -e "$INSTALL_DIR/node_modules/code-server/lib/vscode/node_modules.asar" ]; then
  echo "install-code-server: code-server $CODE_SERVER_VERSION did not install" >&2
  exit 1
fi
echo "code-server $CODE_SERVER_VERSION installed in .cache/code-server in $(( $(date +%s) - started )) s"
