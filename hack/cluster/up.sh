#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster on this machine, inside a network
# namespace of its own: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet and kube-proxy (iptables) built from the Go module proxy, containerd and runc from
# Debian, a bridge CNI, and the Herald image built from the working tree and imported (no
# registry: images are OCI tars made locally). Needs root.
#
# Idempotent: a cluster already up is left as it is; a half-started one is torn down first.
# Ends by printing `export KUBECONFIG=<path>` (usable from the host) on a line of its own,
# then the `helm install` line that works on this cluster (lib.sh, helm_install_line).
# hack/cluster/down.sh removes everything it made.
#
# Settings (environment): CLUSTER_NAME, CLUSTER_DIR, CLUSTER_INDEX (see lib.sh),
# KUBE_VERSION, CONTAINERD_VERSION, HERALD_IMAGE (default herald.local/herald:dev).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PAUSE_IMAGE="herald.local/pause:3.10"
started=$(date +%s)

[[ "$(id -u)" == 0 ]] || die "needs root (network namespace, containerd, kubelet)"

# --- packages ---------------------------------------------------------------------------
need_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x "${CNI_BIN}/bridge" && -x "${CNI_BIN}/host-local" && -x "${CNI_BIN}/loopback" ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v nsenter >/dev/null || missing+=(util-linux)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v ip >/dev/null || missing+=(iproute2)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed"
  fi
  local have
  have="$(containerd --version | awk '{print $3}')"
  if [[ "${have}" != "${CONTAINERD_VERSION}"* ]]; then
    local candidate
    candidate="$(apt-cache madison containerd | awk -v v="${CONTAINERD_VERSION}" '$3 ~ "^"v {print $3; exit}')"
    [[ -n "${candidate}" ]] || die "containerd ${have} installed, ${CONTAINERD_VERSION} wanted and not in apt"
    log "installing containerd=${candidate}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "containerd=${candidate}" >&2
  fi
}

# --- binaries and images ----------------------------------------------------------------
build_binaries() {
  ASSETS="$("${ROOT}/hack/envtest-assets.sh")"
  NODE_BIN="$("${ROOT}/hack/cluster/node-binaries.sh")"
  mkdir -p "${CLUSTER_DIR}/images"
  log "building herald, pause and ociimage from the working tree"
  (cd "${ROOT}" && CGO_ENABLED=0 go build -trimpath -ldflags "-X github.com/herald-dev/herald/internal/version.Version=${HERALD_IMAGE##*:}" \
      -o "${CLUSTER_DIR}/images/herald" . \
    && CGO_ENABLED=0 go build -trimpath -o "${CLUSTER_DIR}/images/pause" ./hack/cluster/pause \
    && go build -o "${CLUSTER_DIR}/images/ociimage" ./hack/cluster/ociimage)
}

import_images() {
  local ociimage="${CLUSTER_DIR}/images/ociimage" certs=()
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && certs=(-add /etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt)
  "${ociimage}" -o "${CLUSTER_DIR}/images/pause.tar" -name "${PAUSE_IMAGE}" -user 65535:65535 -entrypoint /pause \
    -add "${CLUSTER_DIR}/images/pause=/pause"
  "${ociimage}" -o "${CLUSTER_DIR}/images/herald.tar" -name "${HERALD_IMAGE}" -user 65532:65532 -entrypoint /herald \
    -add "${CLUSTER_DIR}/images/herald=/herald" "${certs[@]}"
  local tarball
  for tarball in pause herald; do
    ctr --address "${CONTAINERD_SOCK}" -n k8s.io images import "${CLUSTER_DIR}/images/${tarball}.tar" >&2
  done
}

# --- network ----------------------------------------------------------------------------
make_netns() {
  ip netns add "${NETNS}"
  ip link add "${HOST_VETH}" type veth peer name "${NODE_VETH}" netns "${NETNS}"
  ip addr add "${HOST_IP}/30" dev "${HOST_VETH}"
  ip link set "${HOST_VETH}" up
  in_netns ip addr add "${NODE_IP}/30" dev "${NODE_VETH}"
  in_netns ip link set "${NODE_VETH}" up
  in_netns ip link set lo up
  # Components look for a default route to pick their address; a blackhole one satisfies
  # them without letting any packet leave for an address outside the namespace.
  in_netns ip route add blackhole default
  in_netns sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.route_localnet=1
  # Pod-to-Service-to-pod on one bridge needs bridged packets to pass iptables (kube-proxy's
  # DNAT); the setting is per network namespace.
  in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null \
    || { modprobe br_netfilter 2>/dev/null; in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1; }
}

# --- certificates, tokens, kubeconfigs --------------------------------------------------
make_pki() {
  local p="${CLUSTER_DIR}/pki"
  mkdir -p "${p}"
  local key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${key[@]}" -keyout "${p}/ca.key" -out "${p}/ca.crt" -days 30 -subj "/CN=herald-${CLUSTER_NAME}-ca" 2>/dev/null
  sign() { # name subject extensions
    openssl req "${key[@]}" -keyout "${p}/$1.key" -out "${p}/$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "${p}/$1.csr" -CA "${p}/ca.crt" -CAkey "${p}/ca.key" -CAcreateserial -days 30 \
      -out "${p}/$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
  }
  sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:${NODE_IP},IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  sign kubelet "/CN=${NODE_NAME}" "subjectAltName=IP:${NODE_IP},DNS:${NODE_NAME}
extendedKeyUsage=serverAuth"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "${p}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${p}/sa.key" -pubout -out "${p}/sa.pub" 2>/dev/null

  # Static tokens for the components and the admin: the API server's token file keeps the
  # setup to one CA and no client certificates to rotate.
  local user tokens="${p}/tokens.csv"
  : > "${tokens}"
  for user in admin:system:masters kube-controller-manager: kube-scheduler: "node:system:nodes" kube-proxy:; do
    local name="${user%%:*}" group="${user#*:}" token principal
    token="$(openssl rand -hex 24)"
    case "${name}" in
      admin) principal="herald-admin" ;;
      node) principal="system:node:${NODE_NAME}" ;;
      *) principal="system:${name}" ;;
    esac
    echo "${token},${principal},${principal},\"${group}\"" >> "${tokens}"
    kubeconfig "${CLUSTER_DIR}/${name}.kubeconfig" "https://${NODE_IP}:6443" "${token}"
  done
  cp "${CLUSTER_DIR}/admin.kubeconfig" "${KUBECONFIG_HOST}"
}

kubeconfig() { # path server token
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: herald-${CLUSTER_NAME}
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 < "${CLUSTER_DIR}/pki/ca.crt")
users:
- name: $(basename "$1" .kubeconfig)
  user:
    token: $3
contexts:
- name: herald-${CLUSTER_NAME}
  context: {cluster: herald-${CLUSTER_NAME}, user: $(basename "$1" .kubeconfig)}
current-context: herald-${CLUSTER_NAME}
KC
  chmod 600 "$1"
}

# --- processes --------------------------------------------------------------------------
start() { # name binary args...
  local name="$1"; shift
  log "starting ${name}"
  # setsid: the components outlive this script and a Ctrl-C of it; nsenter execs in place,
  # so $! is the component's own pid.
  setsid nsenter --net="${NETNS_PATH}" -- "$@" >"${CLUSTER_DIR}/logs/${name}.log" 2>&1 </dev/null &
  echo $! > "${CLUSTER_DIR}/run/${name}.pid"
}

wait_for() { # what seconds command...
  local what="$1" deadline=$(( $(date +%s) + $2 )); shift 2
  until "$@" >/dev/null 2>&1; do
    local c
    for c in "${COMPONENTS[@]}"; do
      if [[ -f "${CLUSTER_DIR}/run/${c}.pid" ]] && ! alive "${c}"; then
        tail -n 30 "${CLUSTER_DIR}/logs/${c}.log" >&2
        die "${c} exited while waiting for ${what} (log: ${CLUSTER_DIR}/logs/${c}.log)"
      fi
    done
    (( $(date +%s) < deadline )) || die "timed out waiting for ${what}"
    sleep 0.5
  done
}

kc() { "${ASSETS}/kubectl" --kubeconfig "${KUBECONFIG_HOST}" "$@"; }

start_control_plane() {
  local p="${CLUSTER_DIR}/pki"
  start etcd "${ASSETS}/etcd" --data-dir "${CLUSTER_DIR}/etcd" --name "${NODE_NAME}" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "${NODE_NAME}=http://127.0.0.1:2380" --unsafe-no-fsync --quota-backend-bytes 2147483648
  start kube-apiserver "${ASSETS}/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --secure-port 6443 --advertise-address "${NODE_IP}" \
    --cert-dir "${CLUSTER_DIR}/run" --tls-cert-file "${p}/apiserver.crt" --tls-private-key-file "${p}/apiserver.key" \
    --client-ca-file "${p}/ca.crt" --token-auth-file "${p}/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "${p}/sa.pub" --service-account-signing-key-file "${p}/sa.key" \
    --service-cluster-ip-range "${SERVICE_CIDR}" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --kubelet-client-certificate "${p}/apiserver-kubelet-client.crt" --kubelet-client-key "${p}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "${p}/ca.crt" --kubelet-preferred-address-types InternalIP \
    --profiling=false
  wait_for "kube-apiserver /readyz" 120 curl -sfk --max-time 2 "https://${NODE_IP}:6443/readyz"
  wait_for "the default namespace" 60 kc get --raw /api/v1/namespaces/default
}

write_containerd_config() {
  local c="${CLUSTER_DIR}/containerd"
  mkdir -p "${c}" "${CLUSTER_DIR}/cni/net.d" "${CLUSTER_DIR}/cni/ipam"
  cat > "${c}/config.toml" <<TOML
version = 2
root = "${c}/root"
state = "${c}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "${CONTAINERD_SOCK}"
[plugins."io.containerd.internal.v1.opt"]
  path = "${c}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # The machines lack CAP_SYS_RESOURCE: without this runc fails with
  # "can't get final child's PID from pipe: EOF" when it lowers a container's oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${c}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN}"
    conf_dir = "${CLUSTER_DIR}/cni/net.d"
    max_conf_num = 1
TOML
  cat > "${CLUSTER_DIR}/cni/net.d/10-${CNI_NETWORK}.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "${CNI_NETWORK}",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "${CLUSTER_DIR}/cni/ipam",
               "ranges": [[{"subnet": "${POD_CIDR}"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

# kubelet's cgroups go under a private root, made in every hierarchy beforehand: cgroup v1
# cpuset children start with empty cpus/mems and refuse tasks until they are copied in.
make_cgroups() {
  local m
  for m in $(cgroup_mounts); do
    mkdir -p "${m}${CGROUP_ROOT}"
    if [[ -f "${m}/cpuset.cpus" ]]; then
      cat "${m}/cpuset.cpus" > "${m}${CGROUP_ROOT}/cpuset.cpus"
      cat "${m}/cpuset.mems" > "${m}${CGROUP_ROOT}/cpuset.mems"
    fi
  done
}

start_node() {
  local p="${CLUSTER_DIR}/pki"
  start containerd containerd --config "${CLUSTER_DIR}/containerd/config.toml"
  wait_for "containerd" 60 ctr --address "${CONTAINERD_SOCK}" version
  import_images
  start kube-controller-manager "${NODE_BIN}/kube-controller-manager" \
    --kubeconfig "${CLUSTER_DIR}/kube-controller-manager.kubeconfig" \
    --service-account-private-key-file "${p}/sa.key" --root-ca-file "${p}/ca.crt" \
    --use-service-account-credentials=true --leader-elect=false --secure-port 0 \
    --cluster-name "herald-${CLUSTER_NAME}" --controllers '*,-nodeipam'
  start kube-scheduler "${NODE_BIN}/kube-scheduler" --kubeconfig "${CLUSTER_DIR}/kube-scheduler.kubeconfig" \
    --leader-elect=false --secure-port 0
  make_cgroups
  mkdir -p "${CLUSTER_DIR}/kubelet" "${CLUSTER_DIR}/pod-logs"
  cat > "${CLUSTER_DIR}/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
cgroupDriver: cgroupfs
cgroupRoot: ${CGROUP_ROOT}
failCgroupV1: false
failSwapOn: false
address: ${NODE_IP}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: ${p}/kubelet.crt
tlsPrivateKeyFile: ${p}/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${p}/ca.crt}
authorization: {mode: Webhook}
podLogsDir: ${CLUSTER_DIR}/pod-logs
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A small shared test machine: evict only when really out of room.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
  start kubelet "${NODE_BIN}/kubelet" --config "${CLUSTER_DIR}/kubelet/config.yaml" \
    --kubeconfig "${CLUSTER_DIR}/node.kubeconfig" --root-dir "${CLUSTER_DIR}/kubelet" \
    --cert-dir "${CLUSTER_DIR}/kubelet/pki" --hostname-override "${NODE_NAME}" --node-ip "${NODE_IP}"
  # conntrack limits are not settable in a network namespace: leave them as they are.
  start kube-proxy "${NODE_BIN}/kube-proxy" --kubeconfig "${CLUSTER_DIR}/kube-proxy.kubeconfig" \
    --proxy-mode iptables --cluster-cidr "${POD_CIDR}" --hostname-override "${NODE_NAME}" \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
  wait_for "node ${NODE_NAME} Ready" 180 kc wait --for=condition=Ready "node/${NODE_NAME}" --timeout 2s
  # Pods are refused until the controller-manager has made the namespace's ServiceAccount.
  wait_for "ServiceAccount default/default" 60 kc get serviceaccount default -n default
}

# A static hostPath volume per claim the suites make; no class, so claims without one
# (the chart's default) bind to them.
make_volumes() {
  local i
  for i in 0 1 2 3; do
    mkdir -p "${CLUSTER_DIR}/volumes/pv${i}"
    chmod 0777 "${CLUSTER_DIR}/volumes/pv${i}"
    cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: herald-local-${i}}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: ${CLUSTER_DIR}/volumes/pv${i}, type: Directory}
YAML
  done | kc apply -f - >&2
}

# --- main -------------------------------------------------------------------------------
healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do alive "${c}" || return 1; done
  [[ -f "${KUBECONFIG_HOST}" ]] && ASSETS="$("${ROOT}/hack/envtest-assets.sh")" \
    && kc wait --for=condition=Ready "node/${NODE_NAME}" --timeout 5s >/dev/null 2>&1
}

main() {
  need_packages
  if healthy; then
    log "already up"
    echo "export KUBECONFIG=${KUBECONFIG_HOST}"
    helm_install_line
    exit 0
  fi
  if [[ -e "${NETNS_PATH}" || -d "${CLUSTER_DIR}/run" ]]; then
    log "half up: tearing down first"
    "${ROOT}/hack/cluster/down.sh"
  fi

  # A failure from here leaves a half-built cluster: remove it, so the next run starts clean.
  trap 'rc=$?; if ((rc)); then log "failed; tearing down (logs kept in ${CLUSTER_DIR}/logs.failed)"; rm -rf "${CLUSTER_DIR}/logs.failed"; cp -r "${CLUSTER_DIR}/logs" "${CLUSTER_DIR}/logs.failed" 2>/dev/null; KEEP_LOGS=1 "${ROOT}/hack/cluster/down.sh" || true; fi' EXIT

  build_binaries
  built=$(date +%s)
  mkdir -p "${CLUSTER_DIR}/run" "${CLUSTER_DIR}/logs"
  make_netns
  make_pki
  write_containerd_config
  start_control_plane
  start_node
  make_volumes
  log "node $(kc get node "${NODE_NAME}" -o jsonpath='{.metadata.name} {.status.nodeInfo.containerRuntimeVersion} kubelet {.status.nodeInfo.kubeletVersion}') Ready"
  log "up in $(( $(date +%s) - built ))s (binaries and images: $(( built - started ))s)"
  trap - EXIT
  echo "export KUBECONFIG=${KUBECONFIG_HOST}"
  helm_install_line
}

# Sourced (by a probe or a test), only the functions are defined.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main; fi
