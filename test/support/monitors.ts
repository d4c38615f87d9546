// ServiceMonitor and PodMonitor objects turned into Prometheus scrape configs
// the way the Prometheus Operator does it (its generated job per endpoint:
// Kubernetes service discovery in the selected namespaces, keep relabelings for
// the label selector and the port name, the target labels namespace, service,
// pod, container, job and endpoint), so a plain Prometheus started by a test
// scrapes exactly what the manifests describe. A field this translator does not
// know is an error rather than silently ignored: the manifests stay what is
// tested.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { repoRoot } from "./prometheus.ts";

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: {
    key: string;
    operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
    values?: string[];
  }[];
}

interface Endpoint {
  port?: string;
  path?: string;
  interval?: string;
  scrapeTimeout?: string;
  scheme?: "http" | "https";
}

export interface Monitor {
  apiVersion: string;
  kind: "ServiceMonitor" | "PodMonitor";
  metadata: { name: string; namespace: string };
  spec: {
    selector: LabelSelector;
    namespaceSelector?: { any?: boolean; matchNames?: string[] };
    jobLabel?: string;
    endpoints?: Endpoint[];
    podMetricsEndpoints?: Endpoint[];
  };
}

export interface Relabel {
  action?: "replace" | "keep" | "drop";
  source_labels?: string[];
  separator?: string;
  regex?: string;
  target_label?: string;
  replacement?: string;
}

export interface ScrapeConfig {
  job_name: string;
  scrape_interval?: string;
  scrape_timeout?: string;
  metrics_path: string;
  scheme: string;
  kubernetes_sd_configs: {
    role: "endpoints" | "pod";
    kubeconfig_file?: string;
    namespaces?: { names: string[] };
  }[];
  relabel_configs: Relabel[];
}

export interface ScrapeOptions {
  /** kubeconfig_file of the service discovery (a Prometheus outside the cluster). */
  kubeconfigFile?: string;
  /** Scrape interval (and timeout) instead of the endpoint's, for a short test. */
  interval?: string;
}

/** A manifest of manifests/prometheus/, parsed. */
export function readMonitor(file: string): Monitor {
  return parse(readFileSync(join(repoRoot, "manifests/prometheus", file), "utf8")) as Monitor;
}

/** Kubernetes label name to the name in a discovery meta label (as Prometheus sanitises it). */
const metaName = (label: string) => label.replace(/[^a-zA-Z0-9_]/g, "_");
const quote = (v: string) => v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const KNOWN_SPEC = new Set([
  "selector",
  "namespaceSelector",
  "jobLabel",
  "endpoints",
  "podMetricsEndpoints",
]);
const KNOWN_ENDPOINT = new Set(["port", "path", "interval", "scrapeTimeout", "scheme"]);
const KNOWN_SELECTOR = new Set(["matchLabels", "matchExpressions"]);

function refuseUnknown(what: string, obj: object, known: Set<string>): void {
  const extra = Object.keys(obj).filter((k) => !known.has(k));
  if (extra.length > 0)
    throw new Error(`${what}: the translator does not handle ${extra.join(", ")}`);
}

/** keep/drop relabelings for a label selector on `<prefix>_label_*` (service or pod labels). */
export function selectorRelabels(sel: LabelSelector, prefix: string): Relabel[] {
  refuseUnknown("selector", sel, KNOWN_SELECTOR);
  const out: Relabel[] = [];
  const both = (k: string) => [
    `${prefix}_label_${metaName(k)}`,
    `${prefix}_labelpresent_${metaName(k)}`,
  ];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    out.push({ action: "keep", source_labels: both(k), regex: `(${quote(v)});true` });
  }
  for (const e of sel.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).map(quote).join("|")});true`;
    const present = [`${prefix}_labelpresent_${metaName(e.key)}`];
    switch (e.operator) {
      case "In":
        out.push({ action: "keep", source_labels: both(e.key), regex: values });
        break;
      case "NotIn":
        out.push({ action: "drop", source_labels: both(e.key), regex: values });
        break;
      case "Exists":
        out.push({ action: "keep", source_labels: present, regex: "true" });
        break;
      case "DoesNotExist":
        out.push({ action: "drop", source_labels: present, regex: "true" });
        break;
      default:
        throw new Error(`selector operator ${(e as { operator: string }).operator}`);
    }
  }
  return out;
}

const DROP_FINISHED_PODS: Relabel = {
  action: "drop",
  source_labels: ["__meta_kubernetes_pod_phase"],
  regex: "(Failed|Succeeded)",
};

/** The Prometheus jobs of one ServiceMonitor or PodMonitor: one per endpoint. */
export function scrapeConfigs(m: Monitor, opts: ScrapeOptions = {}): ScrapeConfig[] {
  if (m.apiVersion !== "monitoring.coreos.com/v1") throw new Error(`apiVersion ${m.apiVersion}`);
  refuseUnknown(`${m.kind} ${m.metadata.name}`, m.spec, KNOWN_SPEC);
  const service = m.kind === "ServiceMonitor";
  if (!service && m.kind !== "PodMonitor") throw new Error(`kind ${m.kind}`);
  const endpoints = (service ? m.spec.endpoints : m.spec.podMetricsEndpoints) ?? [];
  if (endpoints.length === 0) throw new Error(`${m.kind} ${m.metadata.name} has no endpoints`);
  const ns = m.spec.namespaceSelector;
  if (ns) refuseUnknown("namespaceSelector", ns, new Set(["any", "matchNames"]));
  // No namespaceSelector: the monitor's own namespace; `any: true`: every namespace.
  const names = ns?.any ? undefined : (ns?.matchNames ?? [m.metadata.namespace]);
  const prefix = service ? "__meta_kubernetes_service" : "__meta_kubernetes_pod";
  const jobFromLabel = m.spec.jobLabel
    ? [
        {
          source_labels: [`${prefix}_label_${metaName(m.spec.jobLabel)}`],
          target_label: "job",
          regex: "(.+)",
        },
      ]
    : [];

  return endpoints.map((ep, i) => {
    refuseUnknown(`${m.kind} ${m.metadata.name} endpoint ${i}`, ep, KNOWN_ENDPOINT);
    if (!ep.port) throw new Error(`${m.kind} ${m.metadata.name} endpoint ${i}: only named ports`);
    const relabel: Relabel[] = service
      ? [
          ...selectorRelabels(m.spec.selector, prefix),
          {
            action: "keep",
            source_labels: ["__meta_kubernetes_endpoint_port_name"],
            regex: quote(ep.port),
          },
          ...(["Node", "Pod"] as const).map((kind) => ({
            source_labels: [
              "__meta_kubernetes_endpoint_address_target_kind",
              "__meta_kubernetes_endpoint_address_target_name",
            ],
            separator: ";",
            regex: `${kind};(.*)`,
            target_label: kind.toLowerCase(),
          })),
          { source_labels: ["__meta_kubernetes_namespace"], target_label: "namespace" },
          { source_labels: ["__meta_kubernetes_service_name"], target_label: "service" },
          { source_labels: ["__meta_kubernetes_pod_name"], target_label: "pod" },
          { source_labels: ["__meta_kubernetes_pod_container_name"], target_label: "container" },
          DROP_FINISHED_PODS,
          {
            source_labels: ["__meta_kubernetes_service_name"],
            target_label: "job",
          },
          ...jobFromLabel,
          { target_label: "endpoint", replacement: ep.port },
        ]
      : [
          DROP_FINISHED_PODS,
          ...selectorRelabels(m.spec.selector, prefix),
          {
            action: "keep",
            source_labels: ["__meta_kubernetes_pod_container_port_name"],
            regex: quote(ep.port),
          },
          { source_labels: ["__meta_kubernetes_namespace"], target_label: "namespace" },
          { source_labels: ["__meta_kubernetes_pod_container_name"], target_label: "container" },
          { source_labels: ["__meta_kubernetes_pod_name"], target_label: "pod" },
          { target_label: "job", replacement: `${m.metadata.namespace}/${m.metadata.name}` },
          ...jobFromLabel,
          { target_label: "endpoint", replacement: ep.port },
        ];
    const interval = opts.interval ?? ep.interval;
    return {
      job_name: `${service ? "serviceMonitor" : "podMonitor"}/${m.metadata.namespace}/${m.metadata.name}/${i}`,
      ...(interval ? { scrape_interval: interval } : {}),
      // A test's short interval bounds the timeout too (Prometheus refuses a longer one).
      ...(opts.interval
        ? { scrape_timeout: opts.interval }
        : ep.scrapeTimeout
          ? { scrape_timeout: ep.scrapeTimeout }
          : {}),
      metrics_path: ep.path ?? "/metrics",
      scheme: ep.scheme ?? "http",
      kubernetes_sd_configs: [
        {
          role: service ? "endpoints" : "pod",
          ...(opts.kubeconfigFile ? { kubeconfig_file: opts.kubeconfigFile } : {}),
          ...(names ? { namespaces: { names } } : {}),
        },
      ],
      relabel_configs: relabel,
    };
  });
}

export interface PrometheusConfig {
  global: { evaluation_interval: string };
  rule_files: string[];
  scrape_configs: (ScrapeConfig | HttpSdScrapeConfig)[];
}

/** A whole prometheus.yml: the monitors' jobs and the rule files, evaluated every `interval`. */
export function prometheusConfig(opts: {
  monitors: Monitor[];
  ruleFiles: string[];
  scrape: ScrapeOptions;
  evaluationInterval: string;
}): PrometheusConfig {
  return {
    global: { evaluation_interval: opts.evaluationInterval },
    rule_files: opts.ruleFiles,
    scrape_configs: opts.monitors.flatMap((m) => scrapeConfigs(m, opts.scrape)),
  };
}

export type HttpSdScrapeConfig = Omit<ScrapeConfig, "kubernetes_sd_configs"> & {
  http_sd_configs: { url: string; refresh_interval: string }[];
};

/**
 * The same configuration for Debian's prometheus, which has no Kubernetes
 * discovery built in: each job's kubernetes_sd_configs move to kubernetes-sd
 * (Prometheus' own discovery code, test/prometheus/kubernetes-sd), and the job
 * reads their targets, meta labels and all, over HTTP SD from `sdUrl`. The
 * relabel_configs stay as they are. Returns the server's config and
 * kubernetes-sd's (job name -> kubernetes_sd_configs).
 */
export function viaHttpSd(
  config: PrometheusConfig,
  sdUrl: string,
  refresh: string,
): {
  server: PrometheusConfig;
  kubernetesSd: Record<string, ScrapeConfig["kubernetes_sd_configs"]>;
} {
  const kubernetesSd: Record<string, ScrapeConfig["kubernetes_sd_configs"]> = {};
  const scrape = config.scrape_configs.map((c) => {
    if (!("kubernetes_sd_configs" in c)) return c;
    const { kubernetes_sd_configs, ...rest } = c;
    kubernetesSd[c.job_name] = kubernetes_sd_configs;
    return {
      ...rest,
      http_sd_configs: [
        {
          url: `${sdUrl}/targets?job=${encodeURIComponent(c.job_name)}`,
          refresh_interval: refresh,
        },
      ],
    };
  });
  return { server: { ...config, scrape_configs: scrape }, kubernetesSd };
}

/** What a Kubernetes label selector selects (matchLabels and matchExpressions). */
export function selects(sel: LabelSelector, labels: Record<string, string>): boolean {
  const ok = Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  return (
    ok &&
    (sel.matchExpressions ?? []).every((e) => {
      const has = e.key in labels;
      const v = labels[e.key] ?? "";
      if (e.operator === "In") return has && (e.values ?? []).includes(v);
      if (e.operator === "NotIn") return !has || !(e.values ?? []).includes(v);
      if (e.operator === "Exists") return has;
      return !has;
    })
  );
}
