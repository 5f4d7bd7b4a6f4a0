// Package cluster holds the cluster end-to-end suite: Herald as real pods on a real
// single-node Kubernetes cluster (kubelet, containerd, runc, kube-proxy) that
// hack/cluster/up.sh starts in a network namespace. See README "Cluster suite".
//
// The suite needs root and the Debian packages .ci/debian-packages lists for it
// (containerd, runc, containernetworking-plugins, iptables, conntrack, iproute2,
// util-linux, openssl, curl); without them it skips with the reason, loudly, and under
// CI=true it fails, naming what is missing. It installs with the `helm install` line
// `make cluster` prints (hack/cluster/lib.sh), and upgrades from the previous release
// recorded in testdata/ (hack/cluster/previous-release.sh).
package cluster
