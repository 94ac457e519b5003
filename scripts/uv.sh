# Sourced by the other scripts (from the repository root): makes sure .uv/bin/uv is the uv
# pinned, with hashes, in scripts/uv-requirements.txt, and sets $UV to it. uv installs the
# locked environments (uv.lock, requirements/lowest.txt) with this machine's python3: it
# never downloads a Python build.
export UV_PYTHON_DOWNLOADS=never UV_PYTHON=python3 UV_NO_PROGRESS=1
UV=.uv/bin/uv
if [ ! -x "$UV" ] || ! cmp -s scripts/uv-requirements.txt .uv/requirements.txt; then
    echo "== installing uv (scripts/uv-requirements.txt)"
    rm -rf .uv
    python3 -m venv .uv
    .uv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
        -r scripts/uv-requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
    "$UV" --version >/dev/null || { echo "could not install uv from PyPI" >&2; exit 1; }
    cp scripts/uv-requirements.txt .uv/requirements.txt
fi

# The locked test environment in .venv: exactly what uv.lock pins, for the extras given
# (e.g. `locked_env dev docs`); --inexact keeps what another script's extras installed.
locked_env() {
    local extras=() extra
    for extra in "$@"; do
        case "$extra" in
            --*) extras+=("$extra") ;;
            *) extras+=(--extra "$extra") ;;
        esac
    done
    if ! "$UV" lock --check --quiet 2>/dev/null; then
        echo "uv.lock does not match pyproject.toml: run \`bash scripts/lock\` and commit uv.lock" >&2
        exit 1
    fi
    "$UV" sync --locked --quiet "${extras[@]}"
}
