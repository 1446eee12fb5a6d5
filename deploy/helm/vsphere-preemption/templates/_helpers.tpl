{{- define "vp.name" -}}vsphere-preemption{{- end -}}

{{- define "vp.fullname" -}}
{{- if contains "vsphere-preemption" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-vsphere-preemption" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vp.functionNamespace" -}}{{ .Values.function.namespace | default .Release.Namespace }}{{- end -}}
{{- define "vp.workerNamespace" -}}{{ .Values.worker.namespace | default .Release.Namespace }}{{- end -}}

{{- define "vp.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "vp.labels" -}}
app.kubernetes.io/name: {{ include "vp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vp.workerSelector" -}}
app.kubernetes.io/name: {{ include "vp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "vp.vcenterSecret" -}}
{{- if .Values.vcenter.existingSecret -}}
{{- .Values.vcenter.existingSecret -}}
{{- else if and .Values.vcenter.username .Values.vcenter.password -}}
{{- printf "%s-vcenter" (include "vp.fullname" .) -}}
{{- else -}}
{{- fail "vcenter: set existingSecret, or username and password for the chart to create the Secret" -}}
{{- end -}}
{{- end -}}

{{/* Secure defaults for every container. */}}
{{- define "vp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
