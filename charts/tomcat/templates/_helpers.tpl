{{- define "tomcat.labels" -}}
{{ include "tomcat.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "tomcat.selector" -}}
app.kubernetes.io/name: tomcat
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The address users reach: the Ingress's URL, when there is one. */}}
{{- define "tomcat.url" -}}
{{ ternary "https" "http" (ne .Values.ingress.tlsSecret "") }}://{{ .Values.ingress.host }}{{ .Values.ingress.path }}
{{- end }}
