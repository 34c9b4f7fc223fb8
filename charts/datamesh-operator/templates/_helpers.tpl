{{/*
The chart's name, or nameOverride.
*/}}
{{- define "datamesh-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, or <release>-<chart> (just the
release name when it already contains the chart name), cut to 63 characters for DNS.
*/}}
{{- define "datamesh-operator.fullname" -}}
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

{{/*
chart-version, as the helm.sh/chart label wants it.
*/}}
{{- define "datamesh-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object the chart makes.
*/}}
{{- define "datamesh-operator.labels" -}}
helm.sh/chart: {{ include "datamesh-operator.chart" . }}
{{ include "datamesh-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: datamesh-operator
{{- end }}

{{/*
The labels that select the operator's pods; they never change after install.
*/}}
{{- define "datamesh-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datamesh-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "datamesh-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "datamesh-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ConfigMap holding the operator's config.yaml.
*/}}
{{- define "datamesh-operator.configMapName" -}}
{{- printf "%s-config" (include "datamesh-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The operator image, tag defaulting to the chart's appVersion.
*/}}
{{- define "datamesh-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The names no Domain may take as its name or namespace, lower-cased, sorted and without
duplicates, as a JSON list (which is also a CEL list literal): `default`, the release
namespace, the Kafka admin and super users, the S3 admin identity, and
tenancy.reservedDomainNames. (`kube-*` is a prefix, checked on its own.)
*/}}
{{- define "datamesh-operator.reservedDomainNames" -}}
{{- $names := list "default" .Release.Namespace .Values.kafka.adminUser .Values.s3.adminAccessKey .Values.s3.adminUser }}
{{- range .Values.kafka.superUsers }}
{{- $names = append $names (trimPrefix "User:" .) }}
{{- end }}
{{- range .Values.tenancy.reservedDomainNames }}
{{- $names = append $names . }}
{{- end }}
{{- $lower := list }}
{{- range $names }}
{{- $lower = append $lower (lower .) }}
{{- end }}
{{- $quoted := list }}
{{- range $lower | compact | uniq | sortAlpha }}
{{- $quoted = append $quoted (toJson .) }}
{{- end }}
{{- printf "[%s]" (join ", " $quoted) }}
{{- end }}
