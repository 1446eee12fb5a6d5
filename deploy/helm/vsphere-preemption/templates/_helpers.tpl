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

{{/* TEMPORAL_TLS*, TEMPORAL_API_KEY_FILE: every variable, empty when unused (empty is unset). */}}
{{- define "vp.temporalSecurityEnv" -}}
{{- $t := .Values.temporal -}}
- name: TEMPORAL_TLS
  value: {{ if $t.tls.enabled }}"true"{{ else }}""{{ end }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ $t.tls.serverName | default "" | quote }}
- name: TEMPORAL_TLS_CA
  value: {{ if $t.tls.caSecret }}"/var/run/secrets/temporal/ca/ca.crt"{{ else }}""{{ end }}
- name: TEMPORAL_TLS_CERT
  value: {{ if $t.tls.clientSecret }}"/var/run/secrets/temporal/client/tls.crt"{{ else }}""{{ end }}
- name: TEMPORAL_TLS_KEY
  value: {{ if $t.tls.clientSecret }}"/var/run/secrets/temporal/client/tls.key"{{ else }}""{{ end }}
- name: TEMPORAL_API_KEY_FILE
  value: {{ if $t.apiKeySecret }}"/var/run/secrets/temporal/api-key/api-key"{{ else }}""{{ end }}
{{- end -}}

{{- define "vp.temporalSecurityMounts" -}}
{{- $t := .Values.temporal -}}
{{- if $t.tls.caSecret }}
- name: temporal-ca
  mountPath: /var/run/secrets/temporal/ca
  readOnly: true
{{- end }}
{{- if $t.tls.clientSecret }}
- name: temporal-client
  mountPath: /var/run/secrets/temporal/client
  readOnly: true
{{- end }}
{{- if $t.apiKeySecret }}
- name: temporal-api-key
  mountPath: /var/run/secrets/temporal/api-key
  readOnly: true
{{- end }}
{{- end -}}

{{/* The Secrets above as volumes; `mode`: the files' mode (0440 with an fsGroup, else 0444). */}}
{{- define "vp.temporalSecurityVolumes" -}}
{{- $t := .Values.temporal -}}
{{- if $t.tls.caSecret }}
- name: temporal-ca
  secret:
    secretName: {{ $t.tls.caSecret }}
    defaultMode: {{ .mode }}
{{- end }}
{{- if $t.tls.clientSecret }}
- name: temporal-client
  secret:
    secretName: {{ $t.tls.clientSecret }}
    defaultMode: {{ .mode }}
{{- end }}
{{- if $t.apiKeySecret }}
- name: temporal-api-key
  secret:
    secretName: {{ $t.apiKeySecret }}
    defaultMode: {{ .mode }}
{{- end }}
{{- end -}}
