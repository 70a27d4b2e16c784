{{/*
The release's name for its objects: the release name when it already says
hookgate, else <release>-hookgate. 55 characters at most, so that
"<fullname>-metrics" and "<fullname>-dashboard" stay within 63.
*/}}
{{- define "hookgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
app.kubernetes.io/name is always "hookgate": the ServiceMonitor makes it the
job label, and the rules and the dashboard select job="hookgate".
*/}}
{{- define "hookgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: hookgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "hookgate.tag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookgate
{{- end -}}

{{/* The gateway pods of this release. */}}
{{- define "hookgate.selectorLabels" -}}
app.kubernetes.io/name: hookgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "hookgate.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "hookgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- $tag := include "hookgate.tag" . -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag: latest is not a version; pin one (or image.digest)" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
seconds turns a duration of whole hours, minutes and seconds ("10s", "1m30s",
"1h") into seconds; anything else fails the render. Called with
(list "shutdownDelay" .Values.shutdownDelay).
*/}}
{{- define "hookgate.seconds" -}}
{{- $name := index . 0 -}}
{{- $d := toString (index . 1) -}}
{{- if or (eq $d "") (not (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d)) -}}
{{- fail (printf "%s: %q is not a duration of whole hours, minutes and seconds (10s, 1m30s)" $name $d) -}}
{{- end -}}
{{- $h := regexFind "[0-9]+h" $d | trimSuffix "h" | default "0" | atoi -}}
{{- $m := regexFind "[0-9]+m" $d | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s" $d | trimSuffix "s" | default "0" | atoi -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- end -}}

{{/*
Longer than serve may take to stop after SIGTERM: --shutdown-delay +
--shutdown-timeout, and 5s for the process to exit.
*/}}
{{- define "hookgate.terminationGracePeriodSeconds" -}}
{{- $delay := include "hookgate.seconds" (list "shutdownDelay" .Values.shutdownDelay) | atoi -}}
{{- $timeout := include "hookgate.seconds" (list "shutdownTimeout" .Values.shutdownTimeout) | atoi -}}
{{- add $delay $timeout 5 -}}
{{- end -}}
