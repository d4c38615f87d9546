{{/*
The chart is made from the kustomize bundle: files/{base,operator,nats,prometheus}
are copies of manifests/ (test/unit/chart.test.ts keeps them identical), so
both install paths start from the same objects. This parses one of those files
into its objects, in order, with every namespace (metadata.namespace,
RoleBinding subjects, the Namespace itself) made the release's; the templates
then set what the values change. Returns JSON, since an include returns a
string.
Usage: include "edgeshift.bundleFile" (list $ "operator/operator.yaml") | fromJsonArray
*/}}
{{- define "edgeshift.bundleFile" -}}
{{- $root := index . 0 -}}
{{- $path := printf "files/%s" (index . 1) -}}
{{- $ns := $root.Release.Namespace -}}
{{- $text := $root.Files.Get $path -}}
{{- if not $text }}{{ fail (printf "%s is missing or empty" $path) }}{{ end -}}
{{- $out := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $text -1 -}}
  {{- $o := fromYaml $doc -}}
  {{- if hasKey $o "Error" }}{{ fail (printf "%s: %s" $path $o.Error) }}{{ end -}}
  {{- if $o.kind -}}
    {{- if eq $o.kind "Namespace" }}{{ $_ := set $o.metadata "name" $ns }}{{ end -}}
    {{- if hasKey $o.metadata "namespace" }}{{ $_ := set $o.metadata "namespace" $ns }}{{ end -}}
    {{- range $s := $o.subjects | default list -}}
      {{- if hasKey $s "namespace" }}{{ $_ := set $s "namespace" $ns }}{{ end -}}
    {{- end -}}
    {{- $out = append $out $o -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The operator's image, which the monitors and agents run too. */}}
{{- define "edgeshift.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
Sets a pod spec's nodeSelector, tolerations and priorityClassName from values
that have them; unset values leave the bundle's pod spec as it is.
Usage: include "edgeshift.placement" (list $podSpec .Values.operator)
*/}}
{{- define "edgeshift.placement" -}}
{{- $pod := index . 0 -}}
{{- $v := index . 1 -}}
{{- if $v.nodeSelector }}{{ $_ := set $pod "nodeSelector" $v.nodeSelector }}{{ end -}}
{{- if $v.tolerations }}{{ $_ := set $pod "tolerations" $v.tolerations }}{{ end -}}
{{- if $v.priorityClassName }}{{ $_ := set $pod "priorityClassName" $v.priorityClassName }}{{ end -}}
{{- end -}}

{{/* Objects as YAML documents. Usage: include "edgeshift.documents" $objects */}}
{{- define "edgeshift.documents" -}}
{{- range $o := . }}
---
{{ toYaml $o }}
{{- end }}
{{- end -}}
