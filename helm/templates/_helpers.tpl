{{/* The chart's name, shortened to fit a Kubernetes name. */}}
{{- define "idp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: release name plus chart name, unless they repeat. */}}
{{- define "idp.fullname" -}}
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

{{- define "idp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "idp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "idp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "idp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "idp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "idp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* One entry taken from the release's Secret. */}}
{{- define "idp.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* The environment of the app and of the migration Job. */}}
{{- define "idp.env" -}}
{{- $secret := .Values.secrets.existingSecret }}
{{- $keys := .Values.secrets.keys -}}
- name: IDP_CONFIG
  value: production
- name: IDP_INSTANCE_PATH
  value: /tmp/idp-instance
- name: IDP_ISSUER
  value: {{ .Values.config.issuer | quote }}
- name: IDP_PORTAL_URL
  value: {{ .Values.config.portalUrl | quote }}
- name: IDP_MAIL_SERVER
  value: {{ .Values.config.mailServer | quote }}
- name: IDP_MAIL_PORT
  value: {{ .Values.config.mailPort | quote }}
- name: IDP_MAIL_USE_TLS
  value: {{ .Values.config.mailUseTls | quote }}
- name: IDP_MAIL_USE_SSL
  value: {{ .Values.config.mailUseSsl | quote }}
- name: IDP_MAIL_DEFAULT_SENDER
  value: {{ .Values.config.mailDefaultSender | quote }}
- name: IDP_VONAGE_SMS_FROM
  value: {{ .Values.config.vonageSmsFrom | quote }}
- name: IDP_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: IDP_TRUSTED_PROXIES
  value: {{ .Values.config.trustedProxies | quote }}
{{ include "idp.secretEnv" (dict "name" "IDP_SECRET_KEY" "secret" $secret "key" $keys.secretKey) }}
{{ include "idp.secretEnv" (dict "name" "IDP_AUDIT_KEY" "secret" $secret "key" $keys.auditKey) }}
{{ include "idp.secretEnv" (dict "name" "IDP_SQLALCHEMY_DATABASE_URI" "secret" $secret "key" $keys.databaseUrl) }}
{{- /* The owner role's credentials reach the migration Job, never the app's pods. */}}
{{- if .forMigrationJob }}
{{ include "idp.secretEnv" (dict "name" "IDP_MIGRATION_DATABASE_URI" "secret" $secret "key" $keys.migrationDatabaseUrl "optional" true) }}
{{- end }}
{{ include "idp.secretEnv" (dict "name" "IDP_VONAGE_API_KEY" "secret" $secret "key" $keys.vonageApiKey) }}
{{ include "idp.secretEnv" (dict "name" "IDP_VONAGE_API_SECRET" "secret" $secret "key" $keys.vonageApiSecret) }}
{{ include "idp.secretEnv" (dict "name" "IDP_MAIL_USERNAME" "secret" $secret "key" $keys.mailUsername "optional" true) }}
{{ include "idp.secretEnv" (dict "name" "IDP_MAIL_PASSWORD" "secret" $secret "key" $keys.mailPassword "optional" true) }}
{{- /* Rate limits, login tries and SMS caps are counted per process without Redis: with more
than one pod or worker each would grant its own share, so the key is then required and a pod
without it does not start. The Jobs (forMigrationJob, forBatchJob) count nothing: optional there. */}}
{{- $shared := and (not .forMigrationJob) (not .forBatchJob) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) (gt (int .Values.gunicorn.workers) 1)) }}
{{ include "idp.secretEnv" (dict "name" "IDP_REDIS_URL" "secret" $secret "key" $keys.redisUrl "optional" (not $shared)) }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What every container of the chart runs with: no root, nothing writable but /tmp. */}}
{{- define "idp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}


{{/* What the pods of the chart's Jobs share: run once, no Kubernetes API, no root. The group
owns what they write to a volume (the audit anchors). */}}
{{- define "idp.batchPodSpec" -}}
restartPolicy: Never
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end }}
