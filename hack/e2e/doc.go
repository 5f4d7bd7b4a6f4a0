// Package e2e is Herald's end-to-end test. It builds the herald binary, starts a real
// etcd and kube-apiserver (envtest), installs the CRDs and the Helm chart with kubectl,
// runs `herald manager` and `herald dispatcher` as processes under the chart's
// ServiceAccounts, applies config/samples pointed at receivers on 127.0.0.1, and from
// then on drives only what a user has: kubectl, helm and the herald CLI. It is a test
// package only; `make test` runs it like every other package.
package e2e
