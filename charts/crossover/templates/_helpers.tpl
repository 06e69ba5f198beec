{{- define "crossover.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crossover.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
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
