{{- define "wordpress.labels" -}}
{{ include "wordpress.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "wordpress.selector" -}}
app.kubernetes.io/name: wordpress
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wordpress.secretName" -}}
{{ .Release.Name }}-auth
{{- end }}

{{/* The name the mysql subchart gives its objects: its Service, StatefulSet, and with -auth its Secret. */}}
{{- define "wordpress.mysqlName" -}}
{{- printf "%s%s" .Release.Name .Values.mysql.nameSuffix | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* The site's address, through the Ingress. */}}
{{- define "wordpress.url" -}}
{{ ternary "https" "http" (ne .Values.ingress.tlsSecret "") }}://{{ .Values.ingress.host }}
{{- end }}

{{/*
One Secret value, base64-encoded. Call with (list $existing "key" $given):
the value the user gave, else the one the Secret already holds (so
upgrades keep it), else 20 random characters.
*/}}
{{- define "wordpress.secretValue" -}}
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
