#!/usr/bin/env bash
# Installs Debian's Chromium (and a font, so screenshots have readable text)
# for the headless-browser tests. Idempotent: does nothing when
# /usr/bin/chromium is already there. Needs root and Debian's package registry.
set -uo pipefail

CHROMIUM=/usr/bin/chromium
PACKAGES=(chromium fonts-dejavu-core)

if [ -x "$CHROMIUM" ]; then
  echo "install-chromium: $CHROMIUM already installed ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: ERROR: $CHROMIUM is missing and apt-get is not available; install Chromium by hand." >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-chromium: ERROR: $CHROMIUM is missing and installing it needs root (no sudo found)." >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-chromium: installing ${PACKAGES[*]} with apt-get ..."
if ! $SUDO apt-get update -qq >/dev/null; then
  echo "install-chromium: ERROR: 'apt-get update' failed; is the Debian package registry reachable?" >&2
  exit 1
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; then
  echo "install-chromium: ERROR: 'apt-get install ${PACKAGES[*]}' failed." >&2
  exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
  echo "install-chromium: ERROR: apt-get finished but $CHROMIUM is still missing." >&2
  exit 1
fi
echo "install-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
