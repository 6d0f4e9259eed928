{{/* Names ------------------------------------------------------------------------------------------ */}}
{{- define "fluxrate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fluxrate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fluxrate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "fluxrate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fluxrate
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "operator") */}}
{{- define "fluxrate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fluxrate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fluxrate.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "fluxrate.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fluxrate.receiver.serviceAccountName" -}}
{{- if .Values.receiver.serviceAccount.create -}}
{{- default (printf "%s-receiver" (include "fluxrate.fullname" .)) .Values.receiver.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.receiver.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fluxrate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The public base URL, required, without a trailing slash. */}}
{{- define "fluxrate.publicBaseUrl" -}}
{{- $url := required "publicBaseUrl is required: set publicBaseUrl to the public HTTPS URL where Stripe reaches the webhook receiver, e.g. --set publicBaseUrl=https://billing.example.com" .Values.publicBaseUrl -}}
{{- trimSuffix "/" $url -}}
{{- end -}}

{{- define "fluxrate.peeringName" -}}
{{- default (include "fluxrate.fullname" .) .Values.operator.ha.peeringName -}}
{{- end -}}

{{/* The kopf peering object names, quoted and comma-separated: the release's, or one per shard (<name>-shard-<i>). */}}
{{- define "fluxrate.peeringNames" -}}
{{- $name := include "fluxrate.peeringName" . -}}
{{- $shards := int .Values.operator.shards -}}
{{- if eq $shards 1 -}}
{{- $name | quote -}}
{{- else -}}
{{- $names := list -}}
{{- range $s := until $shards -}}
{{- $names = append $names (printf "%s-shard-%d" $name $s | quote) -}}
{{- end -}}
{{- join ", " $names -}}
{{- end -}}
{{- end -}}

{{/* Watched namespaces as a list; empty means cluster-wide. */}}
{{- define "fluxrate.clusterWide" -}}
{{- if not .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by both processes: (dict "ctx" $ "component" .Values.operator) */}}
{{- define "fluxrate.podCommon" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ .component.terminationGracePeriodSeconds }}
{{- end -}}

{{/* Labels of one alert of the PrometheusRule: (dict "ctx" $ "alert" .Values.prometheusRule.alerts.<name>) */}}
{{- define "fluxrate.alertLabels" -}}
severity: {{ .alert.severity }}
{{- with .ctx.Values.prometheusRule.additionalAlertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
