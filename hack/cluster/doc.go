// Package cluster holds the cluster end-to-end suite: Herald as real pods on a real
// single-node Kubernetes cluster (kubelet, containerd, runc, kube-proxy) that
// hack/cluster/up.sh starts in a network namespace. See README "Cluster suite".
//
// The suite needs root and Debian's containerd, runc, containernetworking-plugins,
// iptables and conntrack; without them it skips with the reason, loudly.
package cluster
