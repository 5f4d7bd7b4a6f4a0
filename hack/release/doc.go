// Package release holds no code: its tests check the release packaging no other test
// reaches, the Dockerfile and its build context (.dockerignore), without a Docker engine.
// make dist and its install.yaml are checked in charts/, against the API server there.
package release
