{{/* Labels of a component's objects: the ones the kustomize install sets, and Helm's own. */}}
{{- define "stork.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: stork-py
{{ include "stork.helmLabels" .root }}
{{- end }}

{{/* Helm's own labels, for objects the kustomize install leaves unlabelled. */}}
{{- define "stork.helmLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "stork.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* policy/v1 from Kubernetes 1.21; policy/v1beta1 before. */}}
{{- define "stork.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}policy/v1{{- else -}}policy/v1beta1{{- end -}}
{{- end }}

{{- define "stork.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "stork.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end }}

{{/* Replicas spread over nodes: a soft spread, and (antiAffinity) a soft anti-affinity. */}}
{{- define "stork.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {app.kubernetes.io/name: {{ .name }}}
{{- if .antiAffinity }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels: {app.kubernetes.io/name: {{ .name }}}
{{- end }}
{{- end }}

{{- define "stork.placement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* What the components that call the storage API need: Portworx's shared secret. */}}
{{- define "stork.driverEnv" -}}
{{- if eq .Values.driver.name "pxd" }}
env:
  - name: PX_SHARED_SECRET
    valueFrom: {secretKeyRef: {name: {{ .Values.driver.pxd.sharedSecret.name }}, key: {{ .Values.driver.pxd.sharedSecret.key }}, optional: true}}
{{- end }}
{{- end }}

{{/* ... and LINSTOR's client certificate. */}}
{{- define "stork.driverMounts" -}}
{{- if eq .Values.driver.name "linstor" }}
- {name: linstor-client-tls, mountPath: /etc/linstor/client, readOnly: true}
{{- end }}
{{- end }}

{{- define "stork.driverVolumes" -}}
{{- if eq .Values.driver.name "linstor" }}
- name: linstor-client-tls
  secret: {secretName: {{ .Values.driver.linstor.clientTLSSecret }}, optional: true}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget: one replica of a component down at a time. */}}
{{- define "stork.pdb" -}}
apiVersion: {{ include "stork.pdbApiVersion" .root }}
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "stork.helmLabels" .root | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app.kubernetes.io/name: {{ .name }}}
{{- end }}

{{/* The extender's and the webhook's Deployment and Service: the same shape, other ports. */}}
{{- define "stork.server" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stork.labels" . | nindent 4 }}
spec:
  replicas: {{ $values.replicas }}
  selector:
    matchLabels: {app.kubernetes.io/name: {{ .name }}}
  template:
    metadata:
      labels:
        {{- include "stork.labels" . | nindent 8 }}
    spec:
      serviceAccountName: {{ .name }}
      {{- include "stork.podSecurityContext" . | nindent 6 }}
      {{- include "stork.spread" (dict "name" .name "antiAffinity" true) | nindent 6 }}
      {{- include "stork.placement" $root | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "stork.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: [{{ .name }}]
          args: [--bind, "0.0.0.0:{{ .port }}", --certfile, /tls/tls.crt, --keyfile, /tls/tls.key]
          envFrom:
            - configMapRef: {name: stork-config}
          {{- include "stork.driverEnv" $root | nindent 10 }}
          ports:
            - {name: https, containerPort: {{ .port }}, protocol: TCP}
          livenessProbe:
            httpGet: {path: /livez, port: https, scheme: HTTPS}
            periodSeconds: 10
          readinessProbe:
            httpGet: {path: /readyz, port: https, scheme: HTTPS}
            periodSeconds: 5
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          {{- include "stork.containerSecurityContext" . | nindent 10 }}
          volumeMounts:
            {{- include "stork.driverMounts" $root | nindent 12 }}
            - {name: tls, mountPath: /tls, readOnly: true}
            - {name: tmp, mountPath: /tmp}
      volumes:
        {{- include "stork.driverVolumes" $root | nindent 8 }}
        - name: tls
          secret: {secretName: stork-tls}
        - name: tmp
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stork.labels" . | nindent 4 }}
spec:
  selector: {app.kubernetes.io/name: {{ .name }}}
  ports:
    - {name: https, port: {{ .servicePort }}, targetPort: https, protocol: TCP}
---
{{ include "stork.pdb" . }}
{{- end }}

{{- define "stork.injectCA" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/stork-webhook
{{- end }}
{{- end }}
