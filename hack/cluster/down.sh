#!/usr/bin/env bash
# Removes what hack/cluster/up.sh made: the components (reverse order, a bounded wait, then
# SIGKILL), every container and shim, the mounts under the cluster folder and the pods'
# network namespaces, the cluster's network namespace (and with it its veth, bridge and
# iptables rules), its cgroups, and the files kubelet and containerd leave outside the
# cluster folder. Safe to run when nothing is up. KEEP_LOGS=1 keeps CLUSTER_DIR/logs.failed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "needs root"

# stop_pid pid name: SIGTERM, up to 10 s for it to go, then SIGKILL.
stop_pid() {
  local pid="$1" i
  kill -TERM "${pid}" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$2 (${pid}) ignored SIGTERM for 10s: SIGKILL"
  kill -KILL "${pid}" 2>/dev/null || true
}

# Every process in our network namespace: the components and the containerd shims, which
# daemonize away from containerd and would otherwise be hard to tell from another
# cluster's.
netns_pids() {
  [[ -e "${NETNS_PATH}" ]] || return 0
  local ino pid
  ino="$(stat -L -c %i "${NETNS_PATH}")"
  for pid in /proc/[0-9]*; do
    [[ "$(stat -L -c %i "${pid}/ns/net" 2>/dev/null)" == "${ino}" ]] && echo "${pid#/proc/}"
  done
  return 0
}

# Containers live in pod network namespaces but in our cgroup root.
cgroup_pids() {
  local m
  for m in $(cgroup_mounts); do
    [[ -d "${m}${CGROUP_ROOT}" ]] && find "${m}${CGROUP_ROOT}" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

# kill_pids pids...: SIGKILL, and up to 5 s for them to be gone.
kill_pids() {
  [[ -z "${*// /}" ]] && return 0
  kill -KILL "$@" 2>/dev/null || true
  local i pid alive_any
  for ((i = 0; i < 50; i++)); do
    alive_any=0
    for pid in "$@"; do kill -0 "${pid}" 2>/dev/null && alive_any=1; done
    ((alive_any)) || return 0
    sleep 0.1
  done
}

# 1. Components, newest first. The containers go after the kubelet and before the API
# server: they would outlive the kubelet and containerd (their shims keep them), and the
# API server waits for their watches to end before it exits.
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
  c="${COMPONENTS[i]}"
  if [[ "${c}" == containerd ]]; then
    # shellcheck disable=SC2046
    kill_pids $(cgroup_pids)
  fi
  pid="$(pid_of "${c}")"
  [[ -n "${pid}" ]] && alive "${c}" && { log "stopping ${c}"; stop_pid "${pid}" "${c}"; }
done

# 2. Shim sockets (named by a hash under /run/containerd/s) are listed by the shims'
# namespace; note them before the shims go.
shim_sockets=()
if [[ -e "${NETNS_PATH}" ]]; then
  mapfile -t shim_sockets < <(in_netns ss -xlH 2>/dev/null | awk '{print $5}' | grep '^/run/containerd/s/' || true)
fi

# 3. Containers, then shims and anything else left in the namespace.
for round in 1 2 3; do
  pids="$(cgroup_pids) $(netns_pids)"
  [[ -z "${pids// /}" ]] && break
  # shellcheck disable=SC2086
  kill_pids ${pids}
done
for s in "${shim_sockets[@]}"; do rm -f "${s}"; done
# Only empty folders: /run/containerd is fixed in containerd 1.6 for shim sockets and ctr's
# fifos, and another containerd may use it.
find /run/containerd -depth -type d -empty -delete 2>/dev/null || true

# 4. Pod network namespaces (/run/netns/cni-*) and containerd's CNI results, which
# containerd 1.6 keeps in a fixed folder, one file per sandbox and network (ours and the
# shared "cni-loopback"); our sandboxes are the ones in our containerd's state.
for sandbox in "${CLUSTER_DIR}"/containerd/state/io.containerd.grpc.v1.cri/sandboxes/*; do
  [[ -d "${sandbox}" ]] || continue
  id="$(basename "${sandbox}")"
  for result in "${CNI_CACHE}"/results/*-"${id}"-*; do
    [[ -f "${result}" ]] || continue
    for ns in $(grep -o '"sandbox":"[^"]*"' "${result}" | cut -d'"' -f4 | sort -u); do
      if [[ -e "${ns}" ]]; then umount "${ns}" 2>/dev/null || umount -l "${ns}" 2>/dev/null || true; rm -f "${ns}"; fi
    done
    rm -f "${result}"
  done
done
rmdir "${CNI_CACHE}/results" "${CNI_CACHE}" 2>/dev/null || true

# 5. Mounts under the cluster folder (rootfs overlays, shm, projected volumes), deepest
# first.
if [[ -d "${CLUSTER_DIR}" ]]; then
  dir="$(realpath "${CLUSTER_DIR}")"
  for attempt in 1 2 3; do
    mapfile -t mounts < <(awk -v d="${dir}/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mounts[@]})) || break
    for m in "${mounts[@]}"; do umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true; done
  done
fi

# 6. The network namespace: its veth, bridge, pod veths and iptables rules go with it.
if [[ -e "${NETNS_PATH}" ]]; then
  log "removing network namespace ${NETNS}"
  ip netns delete "${NETNS}" 2>/dev/null || { umount "${NETNS_PATH}" 2>/dev/null || true; rm -f "${NETNS_PATH}"; }
fi
ip link delete "${HOST_VETH}" 2>/dev/null || true
# `ip netns add` bind-mounts /run/netns on itself (to share it); undo that when no
# namespace is left in it.
if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
  while umount /run/netns 2>/dev/null; do :; done
  rmdir /run/netns 2>/dev/null || true
fi

# 7. cgroups, leaves first (a cgroup directory goes with rmdir only).
for m in $(cgroup_mounts); do
  [[ -d "${m}${CGROUP_ROOT}" ]] && find "${m}${CGROUP_ROOT}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  [[ -d "${m}${CGROUP_ROOT}" ]] && log "warning: ${m}${CGROUP_ROOT} could not be removed"
done

# 8. kubelet's fixed /var/log/containers links into our pod logs.
if [[ -d /var/log/containers ]]; then
  find /var/log/containers -maxdepth 1 -type l -lname "${CLUSTER_DIR}/*" -delete 2>/dev/null || true
  rmdir /var/log/containers 2>/dev/null || true
fi

# 9. The folder, keeping the build outputs' logs of a failed start when asked.
if [[ -d "${CLUSTER_DIR}" ]]; then
  if [[ "${KEEP_LOGS:-0}" == 1 ]]; then
    find "${CLUSTER_DIR}" -mindepth 1 -maxdepth 1 ! -name logs.failed -exec rm -rf {} +
  else
    rm -rf "${CLUSTER_DIR}"
  fi
fi
log "down"
