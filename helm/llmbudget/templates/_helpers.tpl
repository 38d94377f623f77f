{{- define "llmbudget.fullname" -}}
{{- if contains "llmbudget" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-llmbudget" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llmbudget.labels" -}}
app.kubernetes.io/name: llmbudget
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "llmbudget.selector" -}}
app.kubernetes.io/name: llmbudget
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmbudget.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "llmbudget.gatewayService" -}}
{{ include "llmbudget.fullname" . }}-gateway
{{- end -}}

{{- define "llmbudget.adminSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "llmbudget.fullname" .)) -}}
{{- end -}}

{{- define "llmbudget.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
