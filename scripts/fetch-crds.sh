#!/usr/bin/env bash
# Fetch the CustomResourceDefinitions of the custom resources voxplane renders (KEDA ScaledObject,
# Karpenter NodePool, prometheus-operator PodMonitor, ...) into the user cache, so that
# tests.support.k8s_schema can check rendered objects against their real openAPIV3Schema.
#
# The CRD YAML files ship inside each project's Go module, so they come through the Go module
# proxy (`go mod download`), pinned below. They are third-party files: they go to the cache,
# never into the repository.
#
# Idempotent: a CRD already in the cache from the pinned module version is not fetched again.
# Progress goes to stderr; on failure, one line starting with "fetch-crds: error:" and exit 1.
#
# Environment:
#   VOXPLANE_CACHE   cache root (default: $HOME/.cache/voxplane); CRDs go to $VOXPLANE_CACHE/crds
set -euo pipefail

# Pinned module versions. Each is served by the module proxy and extracts with Go 1.26.8
# (karpenter >= v1.14 declares `go 1.26.9`+ and `go mod download` then refuses to unpack it).
readonly KEDA_MODULE="github.com/kedacore/keda/v2"
readonly KEDA_VERSION="v2.21.0"
readonly KARPENTER_MODULE="sigs.k8s.io/karpenter"
readonly KARPENTER_VERSION="v1.12.1"
readonly PROMOP_MODULE="github.com/prometheus-operator/prometheus-operator"
readonly PROMOP_VERSION="v0.85.0"

# module@version <TAB> path of the CRD inside the module. One CRD per line.
readonly CRDS="\
$KEDA_MODULE@$KEDA_VERSION	config/crd/bases/keda.sh_scaledobjects.yaml
$KEDA_MODULE@$KEDA_VERSION	config/crd/bases/keda.sh_triggerauthentications.yaml
$KEDA_MODULE@$KEDA_VERSION	config/crd/bases/keda.sh_clustertriggerauthentications.yaml
$KARPENTER_MODULE@$KARPENTER_VERSION	pkg/apis/crds/karpenter.sh_nodepools.yaml
$PROMOP_MODULE@$PROMOP_VERSION	example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml
$PROMOP_MODULE@$PROMOP_VERSION	example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
$PROMOP_MODULE@$PROMOP_VERSION	example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"

CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
CRD_DIR="$CACHE_DIR/crds"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
    "") ;;
    -h | --help)
        printf 'usage: %s\n  Copies pinned CRD YAML files from Go modules into %s\n' "$(basename "$0")" "$CRD_DIR" >&2
        exit 0
        ;;
    *) die "unknown argument: $1 (this script takes none)" ;;
esac

# The first line of each cached file records where it came from; a file is up to date when
# that line matches the pinned source (so bumping a version above refreshes the cache).
header_for() { printf '# voxplane fetch-crds source: %s/%s\n' "$1" "$2"; }

is_current() {
    local dest="$1" header="$2"
    [[ -s "$dest" ]] && [[ "$(head -n 1 "$dest")" == "$header" ]]
}

WORK=""
cleanup() { if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

# Download one module@version and print its extracted directory (the module cache, from the
# JSON `Dir`). Runs in a throwaway module so no go.mod of the caller is touched.
module_dir() {
    local modver="$1" json dir err
    # `go mod download -json` prints the JSON (with an Error field) even when it exits non-zero.
    json="$( (cd "$WORK" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$modver" 2>/dev/null) || true)"
    read -r dir err < <(printf '%s' "$json" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    d = {"Error": "go mod download printed no JSON"}
print(d.get("Dir", "-"), d.get("Error", "").replace("\n", " ") or "-")
') || die "could not parse go mod download output for $modver"
    if [[ "$err" != "-" ]]; then
        die "go mod download $modver: $err"
    fi
    [[ "$dir" != "-" && -d "$dir" ]] || die "go mod download $modver gave no module directory"
    printf '%s\n' "$dir"
}

command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH"
mkdir -p "$CRD_DIR"

declare -A DIRS=()  # module@version -> extracted dir, so each module downloads once
start=$SECONDS
fetched=0
while IFS=$'\t' read -r modver path; do
    dest="$CRD_DIR/$(basename "$path")"
    header="$(header_for "$modver" "$path")"
    if is_current "$dest" "$header"; then
        log "present: $(basename "$path") ($modver)"
        continue
    fi
    if [[ -z "${DIRS[$modver]:-}" ]]; then
        command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to download $modver"
        if [[ -z "$WORK" ]]; then
            WORK="$(mktemp -d)"
            (cd "$WORK" && go mod init voxplane.local/fetch-crds >/dev/null 2>&1) ||
                die "go mod init failed in $WORK"
        fi
        log "downloading $modver"
        DIRS[$modver]="$(module_dir "$modver")"
    fi
    src="${DIRS[$modver]}/$path"
    [[ -f "$src" ]] || die "$path not found in $modver (moved upstream? adjust CRDS in $0)"
    grep -q '^kind: CustomResourceDefinition' "$src" || die "$src is not a CustomResourceDefinition"
    # Write to a temp file first: an interrupted copy never leaves a half file that looks current.
    { printf '%s\n' "$header"; cat "$src"; } >"$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
    log "fetched: $(basename "$path") ($modver)"
    fetched=$((fetched + 1))
done <<<"$CRDS"

log "done: $fetched fetched, CRDs in $CRD_DIR ($((SECONDS - start)) s)"
