# shellcheck shell=bash
# Sourced by scripts/test: have_luacheck succeeds when luacheck can run.
#
# luacheck comes from Debian's lua-check package; elsewhere install it yourself (luarocks install
# luacheck). This never changes the machine unasked: apt-get runs only with INSTALL_LUACHECK=1
# (the CI entry point sets it), as root, and says so first.

have_luacheck() {
    command -v luacheck >/dev/null 2>&1 && return 0
    if [[ ${INSTALL_LUACHECK:-} != 1 ]]; then
        echo "==> luacheck not found; install it (as root: apt-get install lua-check), or rerun with"
        echo "    INSTALL_LUACHECK=1 to let this script run apt-get for you"
        return 1
    fi
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "==> INSTALL_LUACHECK=1, but installing needs root and apt-get: install luacheck yourself" >&2
        return 1
    fi
    echo "==> INSTALL_LUACHECK=1: running apt-get install lua-check as root (apt-get update first if needed)"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing or stale on a fresh machine: refresh them only if needed.
    apt-get install -y -qq lua-check >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq lua-check >/dev/null 2>&1; } \
        || true
    command -v luacheck >/dev/null 2>&1
}
