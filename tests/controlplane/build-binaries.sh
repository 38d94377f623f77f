#!/usr/bin/env bash
# Build (or reuse) the Kubernetes binaries the test suite runs as local processes:
#   the control plane: kube-apiserver and kubectl from k8s.io/kubernetes, etcd from
#     go.etcd.io/etcd/server/v3, helm (for the chart tests) from helm.sh/helm/v3;
#   the node (tests marked `node`, tests/controlplane/node.py): kubelet, kube-controller-manager,
#     kube-scheduler and kube-proxy from k8s.io/kubernetes, crictl from sigs.k8s.io/cri-tools,
#     CoreDNS from github.com/coredns/coredns, and the sandbox ("pause") program of
#     tests/controlplane/pause/. containerd, runc and the CNI plugins are Debian packages
#     (.ci/run installs them).
#
# Everything comes from the Go module proxy. The binaries are cached outside the repository,
# keyed by version, and reused on the next run:
#   ${LLMBUDGET_BIN_CACHE:-~/.cache/llmbudget}/k8s-v<K8S_VERSION>/{kube-apiserver,kubectl}
#   ${LLMBUDGET_BIN_CACHE:-~/.cache/llmbudget}/k8s-node-v<K8S_VERSION>/{kubelet,kube-proxy,...}
#   ${LLMBUDGET_BIN_CACHE:-~/.cache/llmbudget}/etcd-v<ETCD_VERSION>/etcd
#   ${LLMBUDGET_BIN_CACHE:-~/.cache/llmbudget}/{crictl-v*,coredns-v*,pause-<source hash>}/
# LLMBUDGET_NODE_BINARIES=0 skips the node's binaries (API-server-only use).
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
CRICTL_VERSION="${CRICTL_VERSION:-1.34.0}"   # v1.35.0 is refused by the module proxy
COREDNS_VERSION="${COREDNS_VERSION:-1.14.7}"
NODE_BINARIES="${LLMBUDGET_NODE_BINARIES:-1}"
CACHE="${LLMBUDGET_BIN_CACHE:-$HOME/.cache/llmbudget}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

k8s_dir="$CACHE/k8s-v$K8S_VERSION"
etcd_dir="$CACHE/etcd-v$ETCD_VERSION"
helm_dir="$CACHE/helm-v$HELM_VERSION-k8s$K8S_VERSION"
node_dir="$CACHE/k8s-node-v$K8S_VERSION"
crictl_dir="$CACHE/crictl-v$CRICTL_VERSION"
coredns_dir="$CACHE/coredns-v$COREDNS_VERSION"
pause_src="$(cd "$(dirname "$0")" && pwd)/pause"
pause_dir="$CACHE/pause-$(cat "$pause_src"/go.mod "$pause_src"/main.go | sha256sum | cut -c1-12)"
mkdir -p "$CACHE"

# Write the wrapper module that builds commands of k8s.io/kubernetes into directory $1.
k8s_wrapper() {
  local work="$1" modfile
  modfile="$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
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
}

# ldflags that stamp the version into k8s.io/kubernetes binaries (else they say v0.0.0).
k8s_ldflags() {
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  echo "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

# build_k8s_commands DIR CMD...: build k8s.io/kubernetes/cmd/CMD for each CMD into DIR.
build_k8s_commands() {
  local dir="$1"; shift
  local missing=0 cmd
  for cmd in "$@"; do [[ -x "$dir/$cmd" ]] || missing=1; done
  if [[ $missing == 0 ]]; then
    echo "control-plane: reusing $* v$K8S_VERSION from $dir"
    return
  fi
  local start=$SECONDS work
  work="$(mktemp -d)"
  trap 'rm -rf "${work:-}"; trap - RETURN' RETURN
  echo "control-plane: building $* v$K8S_VERSION"
  k8s_wrapper "$work"
  local ldflags
  ldflags="$(k8s_ldflags)"
  mkdir -p "$dir.tmp"
  for cmd in "$@"; do
    (cd "$work" && go build -mod=mod -trimpath -ldflags "$ldflags" \
        -o "$dir.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "control-plane: built $* v$K8S_VERSION in $((SECONDS - start)) s"
}

# go_install DIR PACKAGE@VERSION NAME: `go install` one main package into DIR.
go_install() {
  local dir="$1" package="$2" name="$3"
  if [[ -x "$dir/$name" ]]; then
    echo "control-plane: reusing $name from $dir"
    return
  fi
  local start=$SECONDS
  echo "control-plane: building $package"
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" go install -trimpath -ldflags "-s -w" "$package"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "control-plane: built $name in $((SECONDS - start)) s"
}

build_pause() {
  if [[ -x "$pause_dir/pause" ]]; then
    echo "control-plane: reusing pause from $pause_dir"
    return
  fi
  mkdir -p "$pause_dir.tmp"
  (cd "$pause_src" && go build -trimpath -ldflags "-s -w" -o "$pause_dir.tmp/pause" .)
  rm -rf "$pause_dir" && mv "$pause_dir.tmp" "$pause_dir"
  echo "control-plane: built pause"
}

build_k8s() {
  build_k8s_commands "$k8s_dir" kube-apiserver kubectl
}

build_etcd() {
  if [[ -x "$etcd_dir/etcd" ]]; then
    echo "control-plane: reusing etcd v$ETCD_VERSION from $etcd_dir"
    return
  fi
  local start=$SECONDS work
  work="$(mktemp -d)"
  trap 'rm -rf "${work:-}"; trap - RETURN' RETURN
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
if [[ $NODE_BINARIES != 0 ]]; then
  build_k8s_commands "$node_dir" kubelet kube-controller-manager kube-scheduler kube-proxy
  go_install "$crictl_dir" "sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL_VERSION" crictl
  go_install "$coredns_dir" "github.com/coredns/coredns@v$COREDNS_VERSION" coredns
  build_pause
  echo "KUBELET=$node_dir/kubelet"
  echo "KUBE_CONTROLLER_MANAGER=$node_dir/kube-controller-manager"
  echo "KUBE_SCHEDULER=$node_dir/kube-scheduler"
  echo "KUBE_PROXY=$node_dir/kube-proxy"
  echo "CRICTL=$crictl_dir/crictl"
  echo "COREDNS=$coredns_dir/coredns"
  echo "PAUSE=$pause_dir/pause"
fi
echo "HELM=$helm_dir/helm"
echo "KUBE_APISERVER=$k8s_dir/kube-apiserver"
echo "KUBECTL=$k8s_dir/kubectl"
echo "ETCD=$etcd_dir/etcd"
