{{- define "nginx.labels" -}}
{{ include "nginx.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "nginx.selector" -}}
app.kubernetes.io/name: nginx
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The address users reach: the Ingress's URL, when there is one. */}}
{{- define "nginx.url" -}}
{{ ternary "https" "http" (ne .Values.ingress.tlsSecret "") }}://{{ .Values.ingress.host }}{{ .Values.ingress.path }}
{{- end }}
