// Package controllers groups Herald's reconcilers, one sub-package per concern in the
// style of cert-manager: endpoint (signing secret and readiness of WebhookEndpoints),
// subscription (validation of WebhookSubscriptions) and workload (the dispatcher's
// Deployment or StatefulSet, Service, ServiceAccount and configuration).
package controllers
