// Package charts holds no code: its tests check the Helm chart in herald/ and the kustomize
// tree in config/ with the real helm and kubectl against a real API server.
package charts
