{{- define "redis.labels" -}}
{{ include "redis.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "redis.selector" -}}
app.kubernetes.io/name: redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redis.secretName" -}}
{{ .Release.Name }}-auth
{{- end }}

{{/*
One value of the credentials Secret, base64-encoded. Call with
(list $existing "key" $given): the value the user gave, else the one the
Secret already holds (so upgrades keep it), else 20 random characters.
*/}}
{{- define "redis.secretValue" -}}
{{- $existing := index . 0 -}}
{{- $key := index . 1 -}}
{{- $given := index . 2 -}}
{{- if $given -}}
{{- $given | b64enc -}}
{{- else if index $existing $key -}}
{{- index $existing $key -}}
{{- else -}}
{{- randAlphaNum 20 | b64enc -}}
{{- end -}}
{{- end }}
