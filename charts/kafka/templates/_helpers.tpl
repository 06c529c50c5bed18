{{- define "kafka.labels" -}}
{{ include "kafka.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "kafka.selector" -}}
app.kubernetes.io/name: kafka
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kafka.secretName" -}}
{{ .Release.Name }}-auth
{{- end }}

{{/* The broker's stable name, through the headless Service: what it tells clients to connect to. */}}
{{- define "kafka.podHost" -}}
{{ .Release.Name }}-0.{{ .Release.Name }}-headless.{{ .Release.Namespace }}.svc
{{- end }}

{{/*
The environment variable the apache/kafka image turns into a
server.properties entry: KAFKA_ and the name in capitals, "." as "_",
"_" as "__" and "-" as "___".
*/}}
{{- define "kafka.propertyEnv" -}}
KAFKA_{{ . | replace "_" "__" | replace "-" "___" | replace "." "_" | upper }}
{{- end }}
