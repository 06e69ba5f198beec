{{- define "crossover.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crossover.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "crossover.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crossover.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "crossover.labels" -}}
{{ include "crossover.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "crossover.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "crossover.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped names carry the namespace: one release per namespace never collides. */}}
{{- define "crossover.clusterName" -}}
{{- printf "%s-%s" (include "crossover.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <registry>/<repository>@<digest>, else :<tag>, the tag defaulting to the chart's appVersion. */}}
{{- define "crossover.image" -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry -}}{{- $repository = printf "%s/%s" $registry $repository -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The leader Lease's name, as cli.rs derives it: one leader per watched scope. */}}
{{- define "crossover.leaseName" -}}
{{- if .Values.watchNamespace -}}
{{- printf "crossover-leader-%s" .Values.watchNamespace -}}
{{- else -}}
crossover-leader
{{- end -}}
{{- end -}}

{{/* Where the operator's ServiceMonitor, PodMonitor, PrometheusRule or dashboard go. */}}
{{- define "crossover.monitoringNamespace" -}}
{{- default .root.Release.Namespace .namespace -}}
{{- end -}}

{{/*
What the operator does to pools and their children, and nothing more. Rendered into a ClusterRole
when it watches every namespace, into a Role in the watched namespace otherwise.
*/}}
{{- define "crossover.poolRules" -}}
# The pool watch and each reconcile's read (controller/mod.rs, reconcile.rs).
- apiGroups: [crossover.dev]
  resources: [inferencepools]
  verbs: [get, list, watch]
# Status only, written by server-side apply (reconcile.rs write_status). No patch on the pool
# itself: the operator never edits a spec, so it cannot rewrite a pool's image.
- apiGroups: [crossover.dev]
  resources: [inferencepools/status]
  verbs: [patch]
# Each pool's Deployment and Service: read before sizing, watched as owned children, written by
# server-side apply (create when new, patch after). No delete: owner references garbage-collect them.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# The pools' pods: one watch gives scrape targets and which pod a Prometheus series comes from.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Events on the pools (kube's Recorder creates one, then patches its count on repeats).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
