{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "perfsentinel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-qualified name; also the StatefulSet name, so pod hostnames are <fullname>-<ordinal>. At most 52
characters: a StatefulSet's pods get the label controller-revision-hash=<name>-<10 characters>, at most 63.
*/}}
{{- define "perfsentinel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "perfsentinel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "perfsentinel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "perfsentinel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "perfsentinel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "perfsentinel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "perfsentinel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "perfsentinel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "perfsentinel.sharded" -}}
{{- if gt (int .Values.shards) 1 }}true{{ end }}
{{- end }}

{{/*
The configuration file: the user's config plus what the chart owns (listen address, state_dir, mounted
credential files). Credentials are file paths or ${ENV} references, never secret values.
*/}}
{{- define "perfsentinel.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $prometheus := get $config "prometheus" | default dict }}
{{- with .Values.prometheusAuth }}
{{- if .bearerToken.secretName }}
{{- $_ := set $prometheus "bearer_token_file" "/etc/perfsentinel/secrets/bearer-token/token" }}
{{- end }}
{{- if .basicAuth.secretName }}
{{- $_ := set $prometheus "basic_auth" (dict "username" "${PERFSENTINEL_PROMETHEUS_USERNAME}" "password_file" "/etc/perfsentinel/secrets/basic-auth/password") }}
{{- end }}
{{- if .ca.secretName }}
{{- $_ := set $prometheus "ca_file" "/etc/perfsentinel/secrets/ca/ca.crt" }}
{{- end }}
{{- end }}
{{- $_ := set $config "prometheus" $prometheus }}
{{- $_ := set $config "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) }}
{{- $_ := set $config "state_dir" "/var/lib/perfsentinel" }}
{{- toYaml $config }}
{{- end }}

{{/* "true" when perfsentinel runs with --web.config.file (TLS, basic auth or headers for /metrics). */}}
{{- define "perfsentinel.webConfig.enabled" -}}
{{- with .Values.webConfig }}
{{- if or .existingSecret .tls.secretName .basicAuth.users .headers }}true{{ end }}
{{- end }}
{{- end }}

{{- define "perfsentinel.webConfig.secretName" -}}
{{- .Values.webConfig.existingSecret | default (printf "%s-web-config" (include "perfsentinel.fullname" .)) }}
{{- end }}

{{- define "perfsentinel.webConfig.file" -}}
/etc/perfsentinel/web/config/{{ .Values.webConfig.existingSecretKey }}
{{- end }}

{{/*
The web config file (exporter-toolkit format) the chart renders into a Secret: certificate paths are the mounts of
the TLS and client CA Secrets (mounted as folders, so renewals reach the pod and perfsentinel picks them up).
*/}}
{{- define "perfsentinel.webConfig" -}}
{{- $web := dict }}
{{- with .Values.webConfig }}
{{- if .tls.secretName }}
{{- $tls := dict "cert_file" "/etc/perfsentinel/web/tls/tls.crt" "key_file" "/etc/perfsentinel/web/tls/tls.key" "min_version" .tls.minVersion }}
{{- if .tls.clientCA.secretName }}
{{- $_ := set $tls "client_auth_type" "RequireAndVerifyClientCert" }}
{{- $_ := set $tls "client_ca_file" "/etc/perfsentinel/web/client-ca/ca.crt" }}
{{- end }}
{{- $_ := set $web "tls_server_config" $tls }}
{{- end }}
{{- if .basicAuth.users }}
{{- $_ := set $web "basic_auth_users" .basicAuth.users }}
{{- end }}
{{- if .headers }}
{{- $_ := set $web "http_server_config" (dict "headers" .headers) }}
{{- end }}
{{- end }}
{{- toYaml $web }}
{{- end }}

{{/* Pod template shared by the Deployment (shards: 1) and the StatefulSet (shards > 1). */}}
{{- define "perfsentinel.podTemplate" -}}
metadata:
  labels:
    {{- include "perfsentinel.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "perfsentinel.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "perfsentinel.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: perfsentinel
      image: {{ include "perfsentinel.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --log-level={{ .Values.logLevel }}
        {{- if eq .Values.logFormat "json" }}
        - --log-format=json
        {{- end }}
        - run
        - --config=/etc/perfsentinel/perfsentinel.yml
        {{- if include "perfsentinel.sharded" . }}
        - --shard-count={{ .Values.shards }}
        - --shard-index-from-hostname
        {{- end }}
        {{- if include "perfsentinel.webConfig.enabled" . }}
        - --web.config.file={{ include "perfsentinel.webConfig.file" . }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      {{- if or .Values.env .Values.prometheusAuth.basicAuth.secretName }}
      env:
        {{- with .Values.prometheusAuth.basicAuth }}
        {{- if .secretName }}
        - name: PERFSENTINEL_PROMETHEUS_USERNAME
          valueFrom:
            secretKeyRef:
              name: {{ .secretName }}
              key: {{ .usernameKey }}
        {{- end }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/perfsentinel/perfsentinel.yml
          subPath: perfsentinel.yml
          readOnly: true
        - name: state
          mountPath: /var/lib/perfsentinel
        - name: tmp
          mountPath: /tmp
        {{- with .Values.prometheusAuth }}
        {{- if .bearerToken.secretName }}
        - name: bearer-token
          mountPath: /etc/perfsentinel/secrets/bearer-token
          readOnly: true
        {{- end }}
        {{- if .basicAuth.secretName }}
        - name: basic-auth
          mountPath: /etc/perfsentinel/secrets/basic-auth
          readOnly: true
        {{- end }}
        {{- if .ca.secretName }}
        - name: ca
          mountPath: /etc/perfsentinel/secrets/ca
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if include "perfsentinel.webConfig.enabled" . }}
        - name: web-config
          mountPath: /etc/perfsentinel/web/config
          readOnly: true
        {{- end }}
        {{- with .Values.webConfig.tls }}
        {{- if .secretName }}
        - name: web-tls
          mountPath: /etc/perfsentinel/web/tls
          readOnly: true
        {{- end }}
        {{- if .clientCA.secretName }}
        - name: web-client-ca
          mountPath: /etc/perfsentinel/web/client-ca
          readOnly: true
        {{- end }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "perfsentinel.fullname" . }}
    - name: tmp
      emptyDir: {}
    {{- if not (include "perfsentinel.sharded" .) }}
    - name: state
      {{- if .Values.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim | default (include "perfsentinel.fullname" .) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- else if not .Values.persistence.enabled }}
    - name: state
      emptyDir: {}
    {{- end }}
    {{- with .Values.prometheusAuth }}
    {{- if .bearerToken.secretName }}
    - name: bearer-token
      secret:
        secretName: {{ .bearerToken.secretName }}
        items:
          - key: {{ .bearerToken.key }}
            path: token
    {{- end }}
    {{- if .basicAuth.secretName }}
    - name: basic-auth
      secret:
        secretName: {{ .basicAuth.secretName }}
        items:
          - key: {{ .basicAuth.passwordKey }}
            path: password
    {{- end }}
    {{- if .ca.secretName }}
    - name: ca
      secret:
        secretName: {{ .ca.secretName }}
        items:
          - key: {{ .ca.key }}
            path: ca.crt
    {{- end }}
    {{- end }}
    {{- if include "perfsentinel.webConfig.enabled" . }}
    - name: web-config
      secret:
        secretName: {{ include "perfsentinel.webConfig.secretName" . }}
        items:
          - key: {{ .Values.webConfig.existingSecretKey }}
            path: {{ .Values.webConfig.existingSecretKey }}
    {{- end }}
    {{- with .Values.webConfig.tls }}
    {{- if .secretName }}
    - name: web-tls
      secret:
        secretName: {{ .secretName }}
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
    {{- if .clientCA.secretName }}
    - name: web-client-ca
      secret:
        secretName: {{ .clientCA.secretName }}
        items:
          - key: {{ .clientCA.key }}
            path: ca.crt
    {{- end }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
