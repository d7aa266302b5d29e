{{/* Names and labels, as `helm create` writes them. */}}
{{- define "hubwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hubwire.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hubwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hubwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hubwire.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hubwire.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hubwire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hubwire.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the chart's own secrets. */}}
{{- define "hubwire.secretName" -}}
{{- default (include "hubwire.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/* Refuses values that cannot make a working cluster. */}}
{{- define "hubwire.validate" -}}
{{- $replicas := .Values.replicaCount | int }}
{{- if .Values.autoscaling.enabled }}{{ $replicas = .Values.autoscaling.maxReplicas | int }}{{ end }}
{{- if and (gt $replicas 1) (not (or .Values.redis.url .Values.redis.existingSecret)) }}
{{- fail "hubwire: more than one replica needs Redis (redis.url or redis.existingSecret)" }}
{{- end }}
{{- if and (gt $replicas 1) (not (or .Values.database.url .Values.database.existingSecret)) }}
{{- fail "hubwire: more than one replica needs PostgreSQL (database.url or database.existingSecret); SQLite is per pod" }}
{{- end }}
{{- if not (has .Values.antiAffinity (list "soft" "hard" "none")) }}
{{- fail "hubwire: antiAffinity is soft, hard or none" }}
{{- end }}
{{- end }}
