#!/usr/bin/env bash
# Build, once and at pinned versions, what a real deployment of a region needs on this machine:
#   engine         pulumi CLI, pulumi-language-python (+ its exec script), the dynamic-provider
#                  shim pulumi-resource-pulumi-python, pulumi-resource-kubernetes
#   control plane  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
#                  (+ kwok's Stage objects, which standalone kwok needs to move nodes and pods),
#                  and the autoscaling stack the dev cluster runs beside it: KEDA's operator and
#                  metrics adapter (+ KEDA's CRDs and RBAC manifests) and Prometheus (a Debian package)
#
# Everything comes from the Go module proxy; most modules carry `replace` directives, so each is
# built through a wrapper module (scripts/lib.sh). Binaries land in $VOXPLANE_CACHE/bin with the
# version in their name, and $VOXPLANE_CACHE/toolchain/bin holds plain-named links to them: that
# folder goes first on PATH for pulumi and for the tests. A binary already on PATH is used when it
# reports the pinned version. Concurrent runs wait on one lock per binary.
#
# Cold, on 2 cores: about 35-40 min in all (the Kubernetes provider alone ~15 min and 5.5 GB of
# memory; KEDA ~10 min and 2.9 GB). Warm: a few seconds (every binary is version-checked).
#
# usage: ensure-toolchain.sh [engine|control-plane|autoscaling|all] [--print-bin-dir]
#   control-plane includes autoscaling (KEDA and Prometheus), which the dev cluster runs too
#   VOXPLANE_CACHE   cache root (default: $HOME/.cache/voxplane)
set -euo pipefail

# Pins. The provider module is served only at this pseudo-version (= tag v4.25.0); the Python
# SDK pulumi-kubernetes is pinned to the same 4.25.0 in pyproject.toml, so tests run what a user runs.
readonly PULUMI_VERSION="v3.274.0"
readonly LANGUAGE_HOST_SDK_VERSION="v3.68.0" # last sdk/v3 that holds python/cmd/pulumi-language-python
readonly K8S_PROVIDER_MODULE_VERSION="v4.0.0-20260115033456-f47bc2d6f199"
readonly K8S_PROVIDER_VERSION="4.25.0"
readonly K8S_PROVIDER_SDK_VERSION="v4.29.0"  # the provider's Go SDK dependency (its replace points at ../sdk)
readonly K8S_PROVIDER_PULUMI_VERSION="v3.229.0" # pkg/sdk the provider code compiles against
readonly KUBERNETES_VERSION="v1.34.4"
readonly ETCD_VERSION="v3.6.8"
readonly KWOK_VERSION="v0.8.0"
# v2.21.1 declares a newer Go than the one this project builds with (GOTOOLCHAIN=local).
readonly KEDA_VERSION="v2.21.0"
readonly KEDA_MODULE="github.com/kedacore/keda/v2"
readonly PROMETHEUS_VERSION="2.42.0" # Debian bookworm's package

CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"
LINK_DIR="$CACHE_DIR/toolchain/bin"
KWOK_STAGES_DIR="$CACHE_DIR/toolchain/kwok-stages-$KWOK_VERSION"
KEDA_MANIFESTS_DIR="$CACHE_DIR/toolchain/keda-$KEDA_VERSION"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

what="all"
print_bin_dir=0
while (($#)); do
    case "$1" in
        engine | control-plane | autoscaling | all) what="$1" ;;
        --print-bin-dir) print_bin_dir=1 ;;
        -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument: $1 (engine, control-plane, autoscaling, all, --print-bin-dir)" ;;
    esac
    shift
done

mkdir -p "$BIN_DIR" "$LINK_DIR"
export GOTOOLCHAIN=local

# Give BIN its plain name in LINK_DIR. A hard link (a copy across filesystems), not a symlink:
# pulumi-language-python looks for its -exec helper next to its own resolved path.
# Replaced by a rename, so a concurrent caller never sees the name missing.
link_binary() {
    local name="$1" bin="$2" tmp
    [[ "$LINK_DIR/$name" -ef "$bin" ]] && return 0
    tmp="$LINK_DIR/.$name.$$"
    ln -f "$bin" "$tmp" 2>/dev/null || cp -f "$bin" "$tmp"
    mv -f "$tmp" "$LINK_DIR/$name"
}

# on_path_at_version NAME MATCH ARGS...: prints the path of NAME on PATH (outside our own link
# folder) when `NAME ARGS...` prints MATCH.
on_path_at_version() {
    local name="$1" match="$2" path
    shift 2
    path="$(PATH="$(tr ':' '\n' <<<"$PATH" | grep -vxF "$LINK_DIR" | paste -sd: -)" command -v "$name" 2>/dev/null)" || return 1
    # Capture, then match: `cmd | grep -q` fails under pipefail when grep exits first (SIGPIPE).
    [[ "$("$path" "$@" 2>&1)" == *"$match"* ]] || return 1
    printf '%s\n' "$path"
}

# verify_module_version BIN MODULE VERSION: the build info Go embeds names MODULE at VERSION.
verify_module_version() {
    local bin="$1" module="$2" version="$3"
    local info
    info="$(go version -m "$bin" 2>/dev/null)"
    awk -v m="$module" -v v="$version" '($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { ok = 1 } END { exit !ok }' <<<"$info" ||
        die "$bin does not embed $module $version (stale or foreign binary; delete it to rebuild)"
}

# with_build_lock NAME BIN FUNC...: run FUNC unless BIN exists; one builder at a time per NAME.
with_build_lock() {
    local name="$1" bin="$2"
    shift 2
    [[ -x "$bin" ]] && return 0
    exec 8>"$BIN_DIR/.$name-build.lock"
    command -v flock >/dev/null 2>&1 && flock 8
    [[ -x "$bin" ]] && { exec 8>&-; return 0; }
    "$@"
    exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# Kubernetes control plane: one wrapper module, four commands.
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kubernetes() {
    local work start=$SECONDS gomod ldflags pkg
    work="$(mktemp -d "$CACHE_DIR/build-kubernetes.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION (cold: ~12 min, 2 GB; warm cache: ~1 min)"
    # SC2030: GOFLAGS is meant for this subshell only; SC2013: module paths hold no spaces.
    # shellcheck disable=SC2030,SC2013
    (
        export GOFLAGS="${GOFLAGS:-} -mod=mod"
        cd "$work" && go mod init voxplane.local/kubernetes >/dev/null 2>&1 &&
            gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" &&
            # k8s requires its staging modules at v0.0.0 with replace => ./staging/...: pin each to
            # its published v0.<minor>.<patch> instead.
            for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" | grep -v '^k8s.io/sample-' | sort -u); do
                go mod edit -replace "$m=$m@v0${KUBERNETES_VERSION#v1}"
            done &&
            go mod edit -require "k8s.io/kubernetes@$KUBERNETES_VERSION" &&
            {
                printf '//go:build tools\n\npackage tools\n\nimport (\n'
                for b in "${KUBE_BINS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
                printf ')\n'
            } >tools.go &&
            go mod tidy
    ) >"$work/build.log" 2>&1 || { explain_go_failure "$work/build.log"; die "kubernetes wrapper module: $FAIL_REASON"; }
    local minor="${KUBERNETES_VERSION#v1.}"
    minor="${minor%%.*}"
    ldflags="-s -w"
    for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
    done
    for pkg in "${KUBE_BINS[@]}"; do
        log "  go build $pkg"
        # shellcheck disable=SC2031  # the caller's GOFLAGS, as in the subshell above
        (cd "$work" && GOFLAGS="${GOFLAGS:-} -mod=mod" go build -trimpath -ldflags "$ldflags" -o "$work/$pkg" "k8s.io/kubernetes/cmd/$pkg") >>"$work/build.log" 2>&1 ||
            { explain_go_failure "$work/build.log"; die "building $pkg: $FAIL_REASON"; }
    done
    for pkg in "${KUBE_BINS[@]}"; do mv -f "$work/$pkg" "$BIN_DIR/$pkg-$KUBERNETES_VERSION"; done
    rm -rf "$work"
    trap - EXIT
    log "built the Kubernetes control plane in $((SECONDS - start)) s"
}

ensure_kubernetes() {
    local missing=0 b found
    for b in "${KUBE_BINS[@]}"; do
        if found="$(on_path_at_version "$b" "$KUBERNETES_VERSION" --version)" ||
            { [[ $b == kubectl ]] && found="$(on_path_at_version kubectl "$KUBERNETES_VERSION" version --client)"; }; then
            log "$b $KUBERNETES_VERSION on PATH: $found"
            link_binary "$b" "$found"
        elif [[ -x "$BIN_DIR/$b-$KUBERNETES_VERSION" ]]; then
            link_binary "$b" "$BIN_DIR/$b-$KUBERNETES_VERSION"
        else
            missing=1
        fi
    done
    if ((missing)); then
        with_build_lock kubernetes "$BIN_DIR/kubectl-$KUBERNETES_VERSION" build_kubernetes
        for b in "${KUBE_BINS[@]}"; do link_binary "$b" "$BIN_DIR/$b-$KUBERNETES_VERSION"; done
    fi
    [[ "$("$LINK_DIR/kube-apiserver" --version)" == *"$KUBERNETES_VERSION"* ]] || die "kube-apiserver does not report $KUBERNETES_VERSION"
    [[ "$("$LINK_DIR/kubectl" version --client 2>/dev/null)" == *"$KUBERNETES_VERSION"* ]] || die "kubectl does not report $KUBERNETES_VERSION"
    log "kubernetes $KUBERNETES_VERSION ready"
}

ensure_etcd() {
    local bin="$BIN_DIR/etcd-$ETCD_VERSION" found
    if found="$(on_path_at_version etcd "Version: ${ETCD_VERSION#v}" --version)"; then
        log "etcd $ETCD_VERSION on PATH: $found"
        link_binary etcd "$found"
        return 0
    fi
    # go.etcd.io/etcd/server/v3 is etcd's main package; its go.mod replaces sibling modules locally.
    ensure_go_binary etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$bin" "cold: ~2 min"
    [[ "$("$bin" --version)" == *"Version: ${ETCD_VERSION#v}"* ]] || die "$bin does not report $ETCD_VERSION"
    link_binary etcd "$bin"
}

ensure_kwok() {
    local bin="$BIN_DIR/kwok-$KWOK_VERSION" dir
    ensure_go_binary kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" "$bin" "cold: ~1.5 min"
    verify_module_version "$bin" sigs.k8s.io/kwok "$KWOK_VERSION"
    link_binary kwok "$bin"
    # The Stage objects (node heartbeat, pod ready, volumes ...) ship in the module's kustomize/stage/.
    if [[ ! -d "$KWOK_STAGES_DIR" ]]; then
        dir="$(cd "$CACHE_DIR" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" ||
            die "go mod download sigs.k8s.io/kwok@$KWOK_VERSION failed"
        mkdir -p "$KWOK_STAGES_DIR.tmp"
        find "$dir/kustomize/stage" -name '*.yaml' ! -name kustomization.yaml -exec cp {} "$KWOK_STAGES_DIR.tmp/" \;
        chmod u+w "$KWOK_STAGES_DIR.tmp"/*
        mv "$KWOK_STAGES_DIR.tmp" "$KWOK_STAGES_DIR"
    fi
    ln -sfn "$KWOK_STAGES_DIR" "$CACHE_DIR/toolchain/kwok-stages"
    log "kwok $KWOK_VERSION ready ($(find "$KWOK_STAGES_DIR" -name '*.yaml' | wc -l) stage files)"
}

# ---------------------------------------------------------------------------------------------
# Autoscaling: KEDA's operator and metrics adapter, and Prometheus.
KEDA_BINS=(keda-operator keda-adapter)

# KEDA's go.mod has a `replace` and an `exclude`, so `go install` refuses it: a wrapper module
# repeats both (read from that go.mod, so a version bump carries its own) and builds the two
# commands. cmd/webhooks (the admission webhooks) is not needed outside a cluster.
build_keda() {
    local work start=$SECONDS gomod directives ldflags
    work="$(mktemp -d "$CACHE_DIR/build-keda.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    log "building keda-operator, keda-adapter $KEDA_VERSION (cold: ~10 min, 2.9 GB; warm Go caches: ~20 s)"
    # SC2086: $directives is split on purpose, one go mod edit flag per word (none holds a space).
    # shellcheck disable=SC2086
    (
        cd "$work" && go mod init voxplane.local/keda >/dev/null 2>&1 &&
            gomod="$(go mod download -json "$KEDA_MODULE@$KEDA_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" &&
            # One `go mod edit` flag per replace/exclude of KEDA's go.mod; local-path targets
            # (./ ../ /) cannot resolve outside KEDA's repository (it has none today).
            directives="$(go mod edit -json "$gomod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
def at(m):
    return m["Path"] + ("@" + m["Version"] if m.get("Version") else "")
for r in mod.get("Replace") or []:
    if r["New"]["Path"].startswith(("./", "../", "/")):
        continue
    print("-replace=" + at(r["Old"]) + "=" + at(r["New"]))
for e in mod.get("Exclude") or []:
    print("-exclude=" + at(e))
')" &&
            go mod edit -require "$KEDA_MODULE@$KEDA_VERSION" $directives &&
            printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/cmd/operator"\n\t_ "%s/cmd/adapter"\n)\n' \
                "$KEDA_MODULE" "$KEDA_MODULE" >tools.go &&
            go mod tidy
    ) >"$work/build.log" 2>&1 || { explain_go_failure "$work/build.log"; die "keda wrapper module: $FAIL_REASON"; }
    # As KEDA's Makefile stamps it (GO_LDFLAGS): the operator logs this version at start.
    ldflags="-s -w -X $KEDA_MODULE/version.Version=${KEDA_VERSION#v} -X $KEDA_MODULE/version.GitCommit=$KEDA_VERSION"
    log "  go build keda-operator"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$work/keda-operator" "$KEDA_MODULE/cmd/operator") >>"$work/build.log" 2>&1 ||
        { explain_go_failure "$work/build.log"; die "building keda-operator: $FAIL_REASON"; }
    log "  go build keda-adapter"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$work/keda-adapter" "$KEDA_MODULE/cmd/adapter") >>"$work/build.log" 2>&1 ||
        { explain_go_failure "$work/build.log"; die "building keda-adapter: $FAIL_REASON"; }
    local b
    for b in "${KEDA_BINS[@]}"; do mv -f "$work/$b" "$BIN_DIR/$b-$KEDA_VERSION"; done
    rm -rf "$work"
    trap - EXIT
    log "built KEDA $KEDA_VERSION in $((SECONDS - start)) s"
}

# keda_on_path NAME: a NAME on PATH (outside our link folder) whose Go build info names KEDA at
# the pinned version (the binaries print no version without a cluster to talk to).
keda_on_path() {
    local name="$1" path
    path="$(PATH="$(tr ':' '\n' <<<"$PATH" | grep -vxF "$LINK_DIR" | paste -sd: -)" command -v "$name" 2>/dev/null)" || return 1
    awk -v m="$KEDA_MODULE" -v v="$KEDA_VERSION" '($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { ok = 1 } END { exit !ok }' \
        <<<"$(go version -m "$path" 2>/dev/null)" || return 1
    printf '%s\n' "$path"
}

ensure_keda() {
    local missing=0 b found dir
    for b in "${KEDA_BINS[@]}"; do
        if found="$(keda_on_path "$b")"; then
            log "$b $KEDA_VERSION on PATH: $found"
            link_binary "$b" "$found"
        elif [[ -x "$BIN_DIR/$b-$KEDA_VERSION" ]]; then
            link_binary "$b" "$BIN_DIR/$b-$KEDA_VERSION"
        else
            missing=1
        fi
    done
    if ((missing)); then
        with_build_lock keda "$BIN_DIR/keda-adapter-$KEDA_VERSION" build_keda
        for b in "${KEDA_BINS[@]}"; do
            verify_module_version "$BIN_DIR/$b-$KEDA_VERSION" "$KEDA_MODULE" "$KEDA_VERSION"
            link_binary "$b" "$BIN_DIR/$b-$KEDA_VERSION"
        done
    fi
    # The manifests KEDA installs with (its CRDs, its RBAC, the metrics API's APIService) ship in
    # the module's config/: the dev cluster applies them as they are.
    if [[ ! -d "$KEDA_MANIFESTS_DIR" ]]; then
        dir="$(cd "$CACHE_DIR" && GOFLAGS=-mod=mod go mod download -json "$KEDA_MODULE@$KEDA_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" ||
            die "go mod download $KEDA_MODULE@$KEDA_VERSION failed"
        rm -rf "$KEDA_MANIFESTS_DIR.tmp"
        mkdir -p "$KEDA_MANIFESTS_DIR.tmp"
        cp -r "$dir/config/crd/bases" "$KEDA_MANIFESTS_DIR.tmp/crd"
        for b in rbac metrics-server service_account general; do
            mkdir -p "$KEDA_MANIFESTS_DIR.tmp/$b"
            find "$dir/config/$b" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml -exec cp {} "$KEDA_MANIFESTS_DIR.tmp/$b/" \;
        done
        chmod -R u+w "$KEDA_MANIFESTS_DIR.tmp"
        mv "$KEDA_MANIFESTS_DIR.tmp" "$KEDA_MANIFESTS_DIR"
    fi
    ln -sfn "$KEDA_MANIFESTS_DIR" "$CACHE_DIR/toolchain/keda"
    log "keda $KEDA_VERSION ready ($(find "$KEDA_MANIFESTS_DIR/crd" -name '*.yaml' | wc -l) CRDs)"
}

# Prometheus from Debian's package; the dev cluster runs it as a plain process on loopback.
ensure_prometheus() {
    local found
    if ! found="$(on_path_at_version prometheus "version $PROMETHEUS_VERSION" --version)"; then
        if [[ -x /usr/bin/prometheus ]]; then
            die "/usr/bin/prometheus is not $PROMETHEUS_VERSION: $(/usr/bin/prometheus --version 2>&1 | head -n 1)"
        fi
        apt_install_packages prometheus
        # The package starts a system instance on :9090 where init allows it; the dev cluster
        # runs its own on a free loopback port.
        if [[ -d /run/systemd/system ]]; then
            as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
        elif command -v service >/dev/null 2>&1; then
            as_root service prometheus stop >/dev/null 2>&1 || true
        fi
        found="$(on_path_at_version prometheus "version $PROMETHEUS_VERSION" --version)" ||
            die "prometheus $PROMETHEUS_VERSION not on PATH after apt-get install: $(prometheus --version 2>&1 | head -n 1)"
    fi
    link_binary prometheus "$found"
    log "prometheus $PROMETHEUS_VERSION ready: $found"
}

# ---------------------------------------------------------------------------------------------
# Engine.
build_pulumi_cli() {
    local work start=$SECONDS bin="$1"
    work="$(mktemp -d "$CACHE_DIR/build-pulumi.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    log "building pulumi CLI $PULUMI_VERSION (cold: ~8 min, 2.3 GB)"
    (
        cd "$work" && go mod init voxplane.local/pulumi &&
            go mod edit -require "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION" -require "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION" &&
            # pkg/v3's own (non-local) replace: the maintained fork of the clipboard package.
            go mod edit -replace "github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e" &&
            printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' >tools.go &&
            go mod tidy &&
            go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
                -o "$work/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    ) >"$work/build.log" 2>&1 || { explain_go_failure "$work/build.log"; die "building pulumi: $FAIL_REASON"; }
    mv -f "$work/pulumi" "$bin"
    rm -rf "$work"
    trap - EXIT
    log "built $bin in $((SECONDS - start)) s"
}

ensure_pulumi_cli() {
    local bin="$BIN_DIR/pulumi-$PULUMI_VERSION" found
    if found="$(on_path_at_version pulumi "$PULUMI_VERSION" version)"; then
        log "pulumi $PULUMI_VERSION on PATH: $found"
        link_binary pulumi "$found"
        return 0
    fi
    with_build_lock pulumi "$bin" build_pulumi_cli "$bin"
    [[ "$("$bin" version)" == "$PULUMI_VERSION" ]] || die "$bin does not report $PULUMI_VERSION"
    link_binary pulumi "$bin"
    log "pulumi $PULUMI_VERSION ready"
}

# The Python language host's own module is not served; sdk/v3 v3.68.0 still holds it. It speaks
# the same gRPC protocol as the 3.274 engine. Its two Python-side helpers come from sdk/v3@PULUMI_VERSION.
ensure_language_python() {
    local bin="$BIN_DIR/pulumi-language-python-$LANGUAGE_HOST_SDK_VERSION" sdk
    ensure_go_binary pulumi-language-python github.com/pulumi/pulumi/sdk/v3 \
        github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python "$LANGUAGE_HOST_SDK_VERSION" "$bin" "cold: ~1 min"
    verify_module_version "$bin" github.com/pulumi/pulumi/sdk/v3 "$LANGUAGE_HOST_SDK_VERSION"
    link_binary pulumi-language-python "$bin"
    local helpers="$CACHE_DIR/toolchain/pulumi-python-helpers-$PULUMI_VERSION"
    if [[ ! -d "$helpers" ]]; then
        sdk="$(cd "$CACHE_DIR" && go mod download -json "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" ||
            die "go mod download github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION failed"
        mkdir -p "$helpers.tmp"
        cp "$sdk/python/cmd/pulumi-language-python-exec" "$sdk/python/dist/pulumi-resource-pulumi-python" "$helpers.tmp/"
        chmod 0755 "$helpers.tmp"/*
        mv "$helpers.tmp" "$helpers"
    fi
    link_binary pulumi-language-python-exec "$helpers/pulumi-language-python-exec"
    link_binary pulumi-resource-pulumi-python "$helpers/pulumi-resource-pulumi-python"
    log "pulumi-language-python ($LANGUAGE_HOST_SDK_VERSION) and its helpers ($PULUMI_VERSION) ready"
}

build_kubernetes_provider() {
    local work start=$SECONDS bin="$1" src
    work="$(mktemp -d "$CACHE_DIR/build-k8s-provider.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    log "building pulumi-resource-kubernetes $K8S_PROVIDER_VERSION (cold: ~15 min and 5.5 GB of memory; run nothing big beside it)"
    src="$(cd "$CACHE_DIR" && go mod download -json "github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION" 2>"$work/build.log" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" ||
        { explain_go_failure "$work/build.log"; die "downloading the provider module: $FAIL_REASON"; }
    cp -r "$src" "$work/provider"
    chmod -R u+w "$work/provider"
    exec 3>&2
    (
        cd "$work/provider" &&
            go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 \
                -require "github.com/pulumi/pulumi-kubernetes/sdk/v4@$K8S_PROVIDER_SDK_VERSION" \
                -require "github.com/pulumi/pulumi/pkg/v3@$K8S_PROVIDER_PULUMI_VERSION" \
                -require "github.com/pulumi/pulumi/sdk/v3@$K8S_PROVIDER_PULUMI_VERSION" &&
            # -e: cmd/pulumi-gen-kubernetes imports a package pkg no longer has; we do not build it.
            go mod tidy -e &&
            log "  generating the provider's embedded schema files (~4 min)" 2>&3 &&
            (cd cmd/pulumi-resource-kubernetes && VERSION="$K8S_PROVIDER_VERSION" go run generate.go) &&
            log "  go build ./cmd/pulumi-resource-kubernetes (~10 min)" 2>&3 &&
            go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION" \
                -o "$work/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
    ) >>"$work/build.log" 2>&1 || { explain_go_failure "$work/build.log"; die "building pulumi-resource-kubernetes: $FAIL_REASON"; }
    printf '%s %s\n' "$K8S_PROVIDER_MODULE_VERSION" "$K8S_PROVIDER_VERSION" >"$bin.stamp"
    mv -f "$work/pulumi-resource-kubernetes" "$bin"
    rm -rf "$work"
    trap - EXIT
    log "built $bin in $((SECONDS - start)) s"
}

ensure_kubernetes_provider() {
    local bin="$BIN_DIR/pulumi-resource-kubernetes-v$K8S_PROVIDER_VERSION"
    with_build_lock pulumi-resource-kubernetes "$bin" build_kubernetes_provider "$bin"
    # Built from a copy of the module, so Go records the provider itself as (devel) (and -trimpath
    # drops the ldflags): check the pinned dependencies it was built with, and the stamp the build wrote.
    verify_module_version "$bin" github.com/pulumi/pulumi/pkg/v3 "$K8S_PROVIDER_PULUMI_VERSION"
    verify_module_version "$bin" github.com/pulumi/pulumi-kubernetes/sdk/v4 "$K8S_PROVIDER_SDK_VERSION"
    [[ "$(cat "$bin.stamp" 2>/dev/null)" == "$K8S_PROVIDER_MODULE_VERSION $K8S_PROVIDER_VERSION" ]] ||
        die "$bin has no stamp for provider $K8S_PROVIDER_VERSION ($K8S_PROVIDER_MODULE_VERSION); delete it to rebuild"
    link_binary pulumi-resource-kubernetes "$bin"
    log "pulumi-resource-kubernetes $K8S_PROVIDER_VERSION ready"
}

start=$SECONDS
case "$what" in
    control-plane) ensure_etcd; ensure_kwok; ensure_kubernetes; ensure_keda; ensure_prometheus ;;
    autoscaling) ensure_keda; ensure_prometheus ;;
    engine) ensure_language_python; ensure_pulumi_cli; ensure_kubernetes_provider ;;
    all)
        # Two lanes at once: peak memory ~2 GB + 5.5 GB, and one lane's downloads overlap the
        # other's compiles. Each lane is ordered; a failure in either fails the whole run.
        "$0" control-plane &
        cp_pid=$!
        "$0" engine || { wait "$cp_pid" || true; die "engine build failed (see above)"; }
        wait "$cp_pid" || die "control-plane build failed (see above)"
        ;;
esac
log "$what ready in $((SECONDS - start)) s; binaries in $LINK_DIR"
if ((print_bin_dir)); then
    printf '%s\n' "$LINK_DIR"
fi
