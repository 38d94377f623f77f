#!/usr/bin/env bash
# Build (or reuse) the control-plane binaries the test suite runs as local processes:
# kube-apiserver and kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and
# helm (for the chart tests) from helm.sh/helm/v3.
#
# Everything comes from the Go module proxy. The binaries are cached outside the repository,
# keyed by version, and reused on the next run:
#   ${LLMBUDGET_BIN_CACHE:-~/.cache/llmbudget}/k8s-v<K8S_VERSION>/{kube-apiserver,kubectl}
#   ${LLMBUDGET_BIN_CACHE:-~/.cache/llmbudget}/etcd-v<ETCD_VERSION>/etcd
#
# `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` does not work (the module uses
# `replace` directives for its staging repositories), so we build from a throw-away wrapper
# module that requires k8s.io/kubernetes and replaces each staging module by its published
# v0.Y.Z twin. The replace list is derived from upstream's own go.mod.
#
# Prints the cache directory of each component and the build time. Exit code != 0 on failure.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
HELM_VERSION="${HELM_VERSION:-3.20.2}"
CACHE="${LLMBUDGET_BIN_CACHE:-$HOME/.cache/llmbudget}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

k8s_dir="$CACHE/k8s-v$K8S_VERSION"
etcd_dir="$CACHE/etcd-v$ETCD_VERSION"
helm_dir="$CACHE/helm-v$HELM_VERSION-k8s$K8S_VERSION"
mkdir -p "$CACHE"

build_k8s() {
  if [[ -x "$k8s_dir/kube-apiserver" && -x "$k8s_dir/kubectl" ]]; then
    echo "control-plane: reusing kube-apiserver and kubectl v$K8S_VERSION from $k8s_dir"
    return
  fi
  local start=$SECONDS work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  echo "control-plane: building kube-apiserver and kubectl v$K8S_VERSION (cold build: 10-20 min on 2 cores)"
  local modfile
  modfile="$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  local staging_version="v0.${K8S_VERSION#*.}"
  {
    echo "module llmbudget.local/k8swrapper"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$modfile" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  mkdir -p "$k8s_dir.tmp"
  (cd "$work" && go build -mod=mod -trimpath -ldflags "$ldflags" \
      -o "$k8s_dir.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  (cd "$work" && go build -mod=mod -trimpath -ldflags "$ldflags" \
      -o "$k8s_dir.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$k8s_dir" && mv "$k8s_dir.tmp" "$k8s_dir"
  echo "control-plane: built kube-apiserver and kubectl v$K8S_VERSION in $((SECONDS - start)) s"
}

build_etcd() {
  if [[ -x "$etcd_dir/etcd" ]]; then
    echo "control-plane: reusing etcd v$ETCD_VERSION from $etcd_dir"
    return
  fi
  local start=$SECONDS work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  echo "control-plane: building etcd v$ETCD_VERSION"
  printf 'module llmbudget.local/etcdwrapper\n\ngo 1.25\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
    "$ETCD_VERSION" > "$work/go.mod"
  mkdir -p "$etcd_dir.tmp"
  (cd "$work" && go build -mod=mod -trimpath -ldflags "-s -w" \
      -o "$etcd_dir.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$etcd_dir" && mv "$etcd_dir.tmp" "$etcd_dir"
  echo "control-plane: built etcd v$ETCD_VERSION in $((SECONDS - start)) s"
}

build_helm() {
  if [[ -x "$helm_dir/helm" ]]; then
    echo "control-plane: reusing helm v$HELM_VERSION from $helm_dir"
    return
  fi
  local start=$SECONDS
  echo "control-plane: building helm v$HELM_VERSION"
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  mkdir -p "$helm_dir.tmp"
  GOBIN="$helm_dir.tmp" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  rm -rf "$helm_dir" && mv "$helm_dir.tmp" "$helm_dir"
  echo "control-plane: built helm v$HELM_VERSION in $((SECONDS - start)) s"
}

build_etcd
build_k8s
build_helm
echo "HELM=$helm_dir/helm"
echo "KUBE_APISERVER=$k8s_dir/kube-apiserver"
echo "KUBECTL=$k8s_dir/kubectl"
echo "ETCD=$etcd_dir/etcd"
