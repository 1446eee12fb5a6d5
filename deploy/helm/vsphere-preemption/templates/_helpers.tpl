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

{{/* The function's pods: the Knative revision's labels, which its metrics Service selects. */}}
{{- define "vp.functionSelector" -}}
app.kubernetes.io/name: {{ include "vp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: function
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

{{- define "vp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "vp.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The task queue of one entry of `vcenters`: its own, or <temporal.taskQueue>-<name>
     (a default each vCenter can name in `preemptctl -q`). Called with (dict "root" $ "vc" $entry). */}}
{{- define "vp.vcenterTaskQueue" -}}
{{- .vc.taskQueue | default (printf "%s-%s" .root.Values.temporal.taskQueue .vc.name) -}}
{{- end -}}

{{/* The worker Deployments to render, as a JSON list: one per entry of `vcenters`, or the one
     of `vcenter` (suffix "": its names and selector stay as they were before `vcenters`, so an
     upgrade does not meet the Deployment's immutable selector). */}}
{{- define "vp.workers" -}}
{{- $v := .Values -}}
{{- $workers := list -}}
{{- if $v.vcenters -}}
{{- if $v.function.vcenterTaskQueues -}}
{{- fail "vcenters: leave function.vcenterTaskQueues empty; the chart writes VCENTER_TASKQUEUES from vcenters" -}}
{{- end -}}
{{- $names := dict -}}
{{- $queues := dict -}}
{{- range $v.vcenters -}}
{{- if hasKey $names .name -}}
{{- fail (printf "vcenters: the name %q is given twice" .name) -}}
{{- end -}}
{{- $queue := include "vp.vcenterTaskQueue" (dict "root" $ "vc" .) -}}
{{- if hasKey $queues $queue -}}
{{- fail (printf "vcenters: the task queue %q is given twice (each vCenter needs its own)" $queue) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- $_ := set $queues $queue true -}}
{{- $workers = append $workers (dict
      "suffix" (printf "-%s" .name) "name" .name "url" .url "secretName" .secretName
      "taskQueue" $queue
      "replicas" (ternary .replicas $v.worker.replicas (hasKey . "replicas"))
      "insecure" (ternary .insecure $v.vcenter.insecure (hasKey . "insecure"))
      "caBundle" (.caBundle | default $v.vcenter.caBundle)) -}}
{{- end -}}
{{- else -}}
{{- $workers = append $workers (dict
      "suffix" "" "name" "" "url" $v.vcenter.url "secretName" (include "vp.vcenterSecret" .)
      "taskQueue" $v.temporal.taskQueue "replicas" $v.worker.replicas
      "insecure" $v.vcenter.insecure "caBundle" $v.vcenter.caBundle) -}}
{{- end -}}
{{- toJson $workers -}}
{{- end -}}

{{/* The function's VCENTER_TASKQUEUES: from `vcenters` when given, else function.vcenterTaskQueues. */}}
{{- define "vp.vcenterTaskQueues" -}}
{{- if .Values.vcenters -}}
{{- $queues := dict -}}
{{- range .Values.vcenters -}}
{{- $_ := set $queues .url (include "vp.vcenterTaskQueue" (dict "root" $ "vc" .)) -}}
{{- end -}}
{{- toJson $queues -}}
{{- else if .Values.function.vcenterTaskQueues -}}
{{- toJson .Values.function.vcenterTaskQueues -}}
{{- end -}}
{{- end -}}


{{/* What a ServiceMonitor's endpoint adds to every series it scrapes: the release, and for a
     worker the task queue it polls (its pod's annotation). Prometheus' own `namespace` is
     the pod's; the Temporal SDK's `namespace` (Temporal's) becomes `exported_namespace`. */}}
{{- define "vp.releaseRelabeling" -}}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
  targetLabel: release
{{- end }}
