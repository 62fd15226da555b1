# shellcheck shell=bash
# Shared by the scripts/*.sh installers; sourced, not run. The caller sets CACHE_DIR.

# One line to stderr, prefixed with the running script's name (ensure-servers: ...).
SCRIPT_NAME="$(basename "$0" .sh)"
log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo (non-interactive).
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        return 1
    fi
}

# Install Debian packages; a first failure may only mean package lists were never fetched, so
# `apt-get update` once and retry. Dies with one line (and the log's tail) on failure.
apt_install_packages() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available; install yourself: $*"
    log "installing $* with apt-get"
    local apt_log lock_dir="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
    # Set-up scripts may run side by side (CI builds its lanes in parallel): one apt-get at a time.
    mkdir -p "$lock_dir"
    exec 7>"$lock_dir/.apt.lock"
    command -v flock >/dev/null 2>&1 && flock 7
    apt_log="$(mktemp)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$apt_log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        if ! { as_root apt-get update -q &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } >>"$apt_log" 2>&1; then
            tail -n 5 "$apt_log" >&2
            rm -f "$apt_log"
            die "apt-get install $* failed (needs root or passwordless sudo)"
        fi
    fi
    rm -f "$apt_log"
    exec 7>&-
}

# Print the tail of a go log to stderr and set FAIL_REASON to a one-line explanation.
# $2 and $3 (package path, module path) name the module when go reports the package.
FAIL_REASON=""
explain_go_failure() {
    local log="$1" pkg="${2:-}" module="${3:-}" missing
    tail -n 12 "$log" >&2
    # The module proxy answers 403/404/410 for module versions it does not serve.
    missing="$(grep -m1 -oE '[^[:space:]]+@[^[:space:]:]+: reading [^[:space:]]+: (403|404|410)' "$log" | cut -d: -f1 || true)"
    if [[ -n "$pkg" ]]; then
        missing="${missing/#$pkg@/$module@}"
    fi
    if [[ -n "$missing" ]]; then
        FAIL_REASON="module $missing is not available from the Go module proxy"
    else
        FAIL_REASON="$(grep -m1 -E '^(go: |# |.*\.go:[0-9]+)' "$log" || tail -n 1 "$log")"
    fi
}

# Route 1: plain `go install pkg@version`. Go refuses this when the module's go.mod has
# replace/exclude directives; returns 2 then, so the caller falls back to route 2.
_go_install() {
    local module="$1" pkg="$2" version="$3" work="$4" out_bin="$5" log="$4/go-install.log"
    if GOBIN="$work" go install -trimpath -ldflags='-s -w' "$pkg@$version" >"$log" 2>&1; then
        [[ "$work/$(basename "$pkg")" -ef "$out_bin" ]] || mv -f "$work/$(basename "$pkg")" "$out_bin"
        return 0
    fi
    if grep -q 'replace directives\|exclude directives' "$log"; then
        log "go install refused: $module $version has replace/exclude directives"
        return 2
    fi
    explain_go_failure "$log" "$pkg" "$module"
    return 1
}

# Route 2: a throwaway module that requires the module at the pinned version and copies its
# (non-local) replace directives, then `go build`s the command package.
_go_wrapper_build() {
    local module="$1" pkg="$2" version="$3" wrapdir="$4" out_bin="$5" log="$4/go-build.log" modfile
    log "building through a wrapper module in $wrapdir"
    mkdir -p "$wrapdir"
    modfile="$(go mod download -json "$module@$version" 2>"$log" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    if [[ -z "$modfile" || ! -f "$modfile" ]]; then
        explain_go_failure "$log" "$pkg" "$module"
        return 1
    fi
    # Explicit && chains: `set -e` does not apply inside a function called from `||`.
    (
        cd "$wrapdir" &&
            go mod init voxplane.local/wrapper &&
            # Copy replace directives, single-line and block form; local-path targets
            # (./ ../ /) cannot resolve outside the original repository, so drop them.
            {
                awk '
                    /^replace[[:space:]]*\($/ { inblock = 1; next }
                    inblock && /^\)/          { inblock = 0; next }
                    inblock                   { print "replace " $0; next }
                    /^replace[[:space:]]/     { print }
                ' "$modfile" | { grep -Ev '=>[[:space:]]*(\.{1,2}/|/)' || true; }
            } >>go.mod &&
            # A tools-tagged import makes `go mod tidy` record every dependency of the command.
            printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go &&
            go get "$module@$version" &&
            go mod tidy &&
            go build -trimpath -ldflags='-s -w' -o "$out_bin" "$pkg"
    ) >>"$log" 2>&1 || {
        explain_go_failure "$log" "$pkg" "$module"
        return 1
    }
}

# ensure_go_binary NAME MODULE PKG VERSION BIN [HINT]: build PKG from MODULE@VERSION into BIN
# unless it is there already. Concurrent runs wait on a lock; the binary appears atomically.
# VOXPLANE_FORCE_WRAPPER_BUILD=1 skips route 1 (to test route 2).
ensure_go_binary() {
    local name="$1" module="$2" pkg="$3" version="$4" bin="$5" hint="${6:-}"
    if [[ -x "$bin" ]]; then
        log "$name $version cached: $bin"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build $name $version"
    mkdir -p "$(dirname "$bin")"
    exec 9>"$(dirname "$bin")/.$name-build.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if [[ -x "$bin" ]]; then  # another process finished the build while we waited
        log "$name $version cached: $bin"
        return 0
    fi

    local build_dir tmp_bin rc=0 start=$SECONDS
    build_dir="$(mktemp -d "$CACHE_DIR/build-$name.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the directory of this build
    trap "rm -rf '$build_dir'" EXIT  # also on Ctrl-C: no half-built leftovers in the cache
    tmp_bin="$build_dir/$name"
    log "building $name $version${hint:+ ($hint)}"
    if [[ "${VOXPLANE_FORCE_WRAPPER_BUILD:-0}" == 1 ]]; then
        rc=2
    else
        _go_install "$module" "$pkg" "$version" "$build_dir" "$tmp_bin" || rc=$?
    fi
    if ((rc == 2)); then
        rc=0
        _go_wrapper_build "$module" "$pkg" "$version" "$build_dir/wrapper" "$tmp_bin" || rc=1
    fi
    if ((rc != 0)) || [[ ! -x "$tmp_bin" ]]; then
        die "building $name $version failed: ${FAIL_REASON:-no binary produced}"
    fi
    mv -f "$tmp_bin" "$bin"  # same filesystem: an atomic rename
    # Now, not at exit: a script building several tools sets the trap again for each.
    rm -rf "$build_dir"
    trap - EXIT
    log "built $bin in $((SECONDS - start))s"
}

# ensure_source_tool NAME SRC HINT: build the Go program in SRC (this repository's tools/NAME, with
# its committed go.mod and go.sum) into $BIN_DIR/NAME-<hash of go.mod, go.sum, main.go>, once per
# source version; sets TOOL_BIN. The build never rewrites go.mod or go.sum (-mod=readonly).
# Concurrent runs wait on a lock; the binary appears atomically.
ensure_source_tool() {
    local name="$1" src="$2" hint="$3" f hash
    for f in go.mod go.sum main.go; do
        [[ -f "$src/$f" ]] || die "$src/$f missing"
    done
    hash="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
    TOOL_BIN="$BIN_DIR/$name-$hash"
    if [[ -x "$TOOL_BIN" ]]; then
        log "$name cached: $TOOL_BIN"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build tools/$name"
    mkdir -p "$BIN_DIR"
    exec 9>"$BIN_DIR/.$name-build.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if [[ -x "$TOOL_BIN" ]]; then  # another process finished the build while we waited
        log "$name cached: $TOOL_BIN"
        return 0
    fi
    local build_dir start=$SECONDS
    build_dir="$(mktemp -d "$CACHE_DIR/build-$name.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the directory of this build
    trap "rm -rf '$build_dir'" EXIT
    log "building $name $hash ($hint)"
    if ! (cd "$src" && GOWORK=off GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" \
        go build -trimpath -ldflags='-s -w' -o "$build_dir/$name" .) >"$build_dir/go-build.log" 2>&1; then
        explain_go_failure "$build_dir/go-build.log"
        die "building tools/$name failed: ${FAIL_REASON:-see above}"
    fi
    mv -f "$build_dir/$name" "$TOOL_BIN"  # same filesystem: an atomic rename
    rm -rf "$build_dir"
    trap - EXIT
    log "built $TOOL_BIN in $((SECONDS - start))s"
}

# ensure_pip_venv VENV PYTHON WHAT INSTALL: a Python virtualenv at VENV, made once with PYTHON, in
# which the function `INSTALL VENV LOG` runs its pip installs (output to LOG; non-zero: failed).
# It counts only once its stamp file is written, so a killed build is removed and made again;
# concurrent callers wait on a lock; a failed install is removed and dies with pip's last lines.
# WHAT names the contents in progress lines ("checkov 3.3.30").
ensure_pip_venv() {
    local venv="$1" python="$2" what="$3" install="$4"
    local stamp="$venv/.voxplane-complete"
    if [[ -f "$stamp" ]]; then
        return 0
    fi
    command -v "$python" >/dev/null 2>&1 || die "$python not found on PATH (needed for $what)"
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if [[ ! -f "$stamp" ]]; then  # else another process finished it while we waited
        local start=$SECONDS pip_log="$venv.pip.log"
        rm -rf "$venv"
        "$python" -m venv "$venv" || die "$python -m venv failed (Debian: apt-get install python3-venv)"
        : >"$pip_log"
        if ! "$install" "$venv" "$pip_log"; then
            tail -n 20 "$pip_log" >&2
            rm -rf "$venv"
            die "installing $what failed (log above, full log $pip_log)"
        fi
        "$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/requirements.lock" 2>/dev/null || true
        printf '%s\n' "$what" >"$stamp"
        log "installed $what in $((SECONDS - start)) s"
    fi
    exec 9>&-
}
