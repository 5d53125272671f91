{{/* The roles a Deployment each, in the order they are rendered. */}}
{{- define "kurier.roles" -}}
{{- $roles := list "ingest" "dispatcher" "queue" "addresssync" "admin" -}}
{{- if .Values.console.enabled }}{{ $roles = append $roles "console" }}{{ end -}}
{{- join " " $roles -}}
{{- end -}}

{{/* The roles serving an API, so a Service each: all but the dispatcher. */}}
{{- define "kurier.apiRoles" -}}
{{- without (splitList " " (include "kurier.roles" .)) "dispatcher" | join " " -}}
{{- end -}}

{{- define "kurier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kurier.fullname" -}}
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

{{/* The name of a role's objects: <fullname>-<role>. Called with (list $ role). */}}
{{- define "kurier.component" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "kurier.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kurier.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "kurier.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "kurier.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kurier.selectorLabels" . }}
app.kubernetes.io/version: {{ $.Values.image.tag | default $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: kurier
{{- end -}}

{{- define "kurier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kurier.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Where queue senders reach the queue API: as set, or the ingress host, or
else the queue's Service for senders in the cluster.
*/}}
{{- define "kurier.publicURL" -}}
{{- if .Values.queue.publicURL -}}
{{- .Values.queue.publicURL -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" (ne .Values.ingress.tlsSecretName "")) .Values.ingress.host -}}
{{- else -}}
{{- printf "http://%s.%s.svc:8080" (include "kurier.component" (list . "queue")) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The admin API's host:port, as the console dials it. */}}
{{- define "kurier.adminAddr" -}}
{{- printf "%s:9090" (include "kurier.component" (list . "admin")) -}}
{{- end -}}

{{/*
A map of settings as env entries. Numbers in values files arrive as
float64, which would print 67108864 as 6.7108864e+07: whole ones print
as integers.
*/}}
{{- define "kurier.env" -}}
{{- range $name, $value := . }}
{{- $whole := and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
- {name: {{ $name }}, value: {{ ternary (printf "%d" (int64 $value)) (toString $value) $whole | quote }}}
{{- end }}
{{- end -}}
