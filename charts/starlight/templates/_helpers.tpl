{{/* Names, labels and images shared by every template. */}}

{{- define "starlight.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "starlight.fullname" -}}
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

{{/* A component's resource name: fullname-COMPONENT, 63 characters at most. */}}
{{- define "starlight.componentName" -}}
{{- printf "%s-%s" (include "starlight.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "starlight.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "starlight.selectorLabels" -}}
app.kubernetes.io/name: {{ include "starlight.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels; call with (dict "root" $ "component" "proxy"). */}}
{{- define "starlight.labels" -}}
helm.sh/chart: {{ include "starlight.chart" .root }}
{{ include "starlight.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: starlight
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Image reference; call with (dict "root" $ "image" .Values.proxy.image). */}}
{{- define "starlight.image" -}}
{{- $registry := .image.registry | default .root.Values.global.imageRegistry }}
{{- $tag := .image.tag | default .root.Chart.AppVersion }}
{{- if $registry }}
{{- printf "%s/%s:%s" $registry .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* imagePullSecrets: global list + the component's; call with (dict "root" $ "secrets" LIST). */}}
{{- define "starlight.imagePullSecrets" -}}
{{- $all := concat (.root.Values.global.imagePullSecrets | default list) (.secrets | default list) }}
{{- if $all }}
imagePullSecrets:
{{- range $all }}
{{- if kindIs "string" . }}
  - name: {{ . }}
{{- else }}
  - {{ toYaml . | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "starlight.proxy.serviceAccountName" -}}
{{- if .Values.proxy.serviceAccount.create }}
{{- default (include "starlight.componentName" (dict "root" . "component" "proxy")) .Values.proxy.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.proxy.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "starlight.node.serviceAccountName" -}}
{{- if .Values.node.serviceAccount.create }}
{{- default (include "starlight.componentName" (dict "root" . "component" "node")) .Values.node.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.node.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "starlight.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "starlight.componentName" (dict "root" . "component" "controller")) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The proxy's URL inside the cluster. */}}
{{- define "starlight.proxy.url" -}}
{{- printf "http://%s.%s.svc:%v" (include "starlight.componentName" (dict "root" . "component" "proxy")) .Release.Namespace .Values.proxy.service.port }}
{{- end }}

{{/* Secret and key holding the proxy's libpq connection string. */}}
{{- define "starlight.db.secretName" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecret }}
{{- else }}
{{- include "starlight.componentName" (dict "root" . "component" "db") }}
{{- end }}
{{- end }}

{{- define "starlight.db.secretKey" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecretKey }}
{{- else -}}
conninfo
{{- end }}
{{- end }}

{{/* The embedded database password: values, else the one already in the cluster, else new. */}}
{{- define "starlight.postgresql.password" -}}
{{- if .Values.postgresql.auth.password }}
{{- .Values.postgresql.auth.password }}
{{- else }}
{{- $name := include "starlight.componentName" (dict "root" . "component" "postgresql") }}
{{- $old := lookup "v1" "Secret" .Release.Namespace $name }}
{{- if and $old $old.data (index $old.data "password") }}
{{- index $old.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}

{{/* containerd paths of the node: plain containerd or k3s. */}}
{{- define "starlight.containerd.runDir" -}}
{{- if .Values.node.containerd.k3s }}{{ .Values.node.containerd.k3sRunDir }}{{ else }}{{ .Values.node.containerd.runDir }}{{ end }}
{{- end }}
{{- define "starlight.containerd.configDir" -}}
{{- if .Values.node.containerd.k3s }}{{ .Values.node.containerd.k3sConfigDir }}{{ else }}{{ .Values.node.containerd.configDir }}{{ end }}
{{- end }}
{{- define "starlight.containerd.configFile" -}}
{{- if .Values.node.containerd.k3s }}{{ .Values.node.containerd.k3sConfigFile }}{{ else }}{{ .Values.node.containerd.configFile }}{{ end }}
{{- end }}
{{- define "starlight.containerd.restartCommand" -}}
{{- if .Values.node.containerd.k3s }}{{ .Values.node.containerd.k3sRestartCommand }}{{ else }}{{ .Values.node.containerd.restartCommand }}{{ end }}
{{- end }}

{{/* Webhook service name and TLS secret name. */}}
{{- define "starlight.webhook.serviceName" -}}
{{- include "starlight.componentName" (dict "root" . "component" "webhook") }}
{{- end }}
{{- define "starlight.webhook.tlsSecretName" -}}
{{- include "starlight.componentName" (dict "root" . "component" "webhook-tls") }}
{{- end }}
