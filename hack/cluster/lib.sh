# Shared settings of hack/cluster/up.sh and down.sh; sourced, not run.
#
# One cluster is one CLUSTER_NAME: a network namespace named herald-<name>, a state folder
# CLUSTER_DIR, a cgroup root /herald-<name> and a subnet index CLUSTER_INDEX. The test suite
# runs its own cluster beside a developer's `make cluster` by choosing other values.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
# kubelet 1.38 may drop containerd 1.x: the version is a parameter, checked against the
# installed containerd (a prefix: 1.6 accepts 1.6.20~ds1-1+deb12u3).
CONTAINERD_VERSION="${CONTAINERD_VERSION:-1.6}"
CLUSTER_NAME="${CLUSTER_NAME:-dev}"
CLUSTER_INDEX="${CLUSTER_INDEX:-0}"
CLUSTER_DIR="${CLUSTER_DIR:-${ROOT}/bin/cluster/${CLUSTER_NAME}}"
# The Herald image up.sh builds from the working tree and imports (never pulled).
HERALD_IMAGE="${HERALD_IMAGE:-herald.local/herald:dev}"

NETNS="herald-${CLUSTER_NAME}"
NETNS_PATH="/run/netns/${NETNS}"
HOST_VETH="hrl${CLUSTER_INDEX}h"
NODE_VETH="hrl${CLUSTER_INDEX}n"
HOST_IP="10.250.${CLUSTER_INDEX}.1"          # host end of the veth
NODE_IP="10.250.${CLUSTER_INDEX}.2"          # the node's InternalIP, reachable from the host
POD_CIDR="10.251.${CLUSTER_INDEX}.0/24"
SERVICE_CIDR="10.96.0.0/16"                  # private to the namespace; 10.96.0.1 is the API
NODE_NAME="herald-${CLUSTER_NAME}-node"
CGROUP_ROOT="/herald-${CLUSTER_NAME}"
CNI_NETWORK="herald-${CLUSTER_NAME}"
CNI_CACHE="/var/lib/cni"                    # containerd 1.6 keeps CNI results here, fixed
CNI_BIN="/usr/lib/cni"                      # Debian's containernetworking-plugins
CONTAINERD_SOCK="${CLUSTER_DIR}/containerd/containerd.sock"
KUBECONFIG_HOST="${CLUSTER_DIR}/kubeconfig"
# Components in start order; stopped in reverse.
COMPONENTS=(etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { echo "cluster[${CLUSTER_NAME}]: $*" >&2; }
die() { log "error: $*"; exit 1; }

in_netns() { nsenter --net="${NETNS_PATH}" -- "$@"; }

pid_of() { cat "${CLUSTER_DIR}/run/$1.pid" 2>/dev/null || true; }

alive() {
  local pid
  pid="$(pid_of "$1")"
  [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null
}

# The cgroup v1 hierarchies (and the v2 one, if any) the kubelet will create pod cgroups in.
cgroup_mounts() {
  awk '$3 ~ /^cgroup2?$/ {print $2}' /proc/self/mounts
}

# The `helm install` that works on this cluster, printed by up.sh after the KUBECONFIG
# line: the image up.sh imported, and an outbound policy that lets deliveries reach
# receivers on the node's private network over plain http (the chart's defaults refuse
# both). The cluster suite runs exactly this line; the README shows it for `make cluster`.
helm_install_line() {
  echo "helm install herald charts/herald -n herald-system --create-namespace --wait" \
    "--set image.repository=${HERALD_IMAGE%:*} --set image.tag=${HERALD_IMAGE##*:}" \
    "--set outbound.allowPlainHTTP=true --set outbound.allowPrivateNetworks=true"
}
