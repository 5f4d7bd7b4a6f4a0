{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 41 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every object. Truncated to 41 characters: the dispatcher StatefulSet adds
"-dispatcher" and Kubernetes adds a revision hash to a 63-character label.
*/}}
{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 41 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 41 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 41 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "herald.managerName" -}}
{{ include "herald.fullname" . }}-manager
{{- end }}

{{/*
Name of the dispatcher's objects, which the manager creates: the dispatcher
ClusterRoleBinding refers to its ServiceAccount by this name.
*/}}
{{- define "herald.dispatcherName" -}}
{{ include "herald.fullname" . }}-dispatcher
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- end }}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "herald.managerSelectorLabels" -}}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{- define "herald.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
imagePullSecrets as names, accepting both ["name"] and [{name: name}].
*/}}
{{- define "herald.pullSecretNames" -}}
{{- range .Values.imagePullSecrets }}
{{- if kindIs "string" . }}
- {{ . }}
{{- else }}
- {{ .name }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Restricted Pod Security: the manager's and (through the manager) the dispatcher's.
*/}}
{{- define "herald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "herald.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
What the dispatcher reads and writes in the namespaces it serves: its configuration
(endpoints, subscriptions, the Secrets they reference: listed and watched by metadata
only, the referenced ones read; the Services endpoints send to), their status, and Events. Cluster-wide by default; in a
Role per namespace with watchNamespaces. Keep in step with config/rbac/dispatcher_role.yaml.
*/}}
{{- define "herald.dispatcherNamespacedRules" -}}
- apiGroups: [hooks.herald.dev]
  resources: [webhookendpoints, webhooksubscriptions, webhookeventtypes]
  verbs: [get, list, watch]
- apiGroups: [hooks.herald.dev]
  resources: [webhookendpoints/status, webhooksubscriptions/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
Who issues the dispatcher's certificate, as the manager's --dispatcher-tls says it:
external (cert-manager: dispatcher.tls.issuer certManager, or auto where the cluster
serves cert-manager.io/v1) or manager.
*/}}
{{- define "herald.tlsIssuer" -}}
{{- $issuer := (.Values.dispatcher.tls | default dict).issuer | default "auto" }}
{{- if or (eq $issuer "certManager") (and (eq $issuer "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1")) -}}
external
{{- else -}}
manager
{{- end }}
{{- end }}
