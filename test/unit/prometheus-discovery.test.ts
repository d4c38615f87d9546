// The ServiceMonitor and PodMonitor of manifests/prometheus/ find what they
// are meant to scrape: the ServiceMonitor the operator's metrics Service (and
// through it the operator pods' port), the PodMonitor the agent pods the
// operator makes for an EdgeNode (operator/edgenode/agent.ts) and their port
// named metrics. Their translation into scrape configs (test/support/monitors.ts,
// what test/nodes/prometheus.test.ts gives a live Prometheus) is a config
// Debian's `promtool check config` accepts, rules included.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { V1Deployment, V1Service } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import type { EdgeNode } from "../../operator/api/v1alpha1.ts";
import { agentDaemonSet } from "../../operator/edgenode/agent.ts";
import {
  type Monitor,
  prometheusConfig,
  readMonitor,
  scrapeConfigs,
  selects,
  viaHttpSd,
} from "../support/monitors.ts";
import { alertRules, prometheusBinaries, repoRoot, ruleFileYaml } from "../support/prometheus.ts";

const run = promisify(execFile);

function bundle(file: string): (V1Service | V1Deployment)[] {
  return parseAllDocuments(readFileSync(join(repoRoot, file), "utf8")).map(
    (d) => d.toJS() as V1Service | V1Deployment,
  );
}
const operatorObjects = bundle("manifests/operator/operator.yaml");
const natsObjects = bundle("manifests/nats/nats.yaml");
const services = [...operatorObjects, ...natsObjects].filter(
  (o): o is V1Service => o.kind === "Service",
);
const deployment = operatorObjects.find((o): o is V1Deployment => o.kind === "Deployment");
const serviceMonitor = readMonitor("servicemonitor.yaml");
const podMonitor = readMonitor("podmonitor.yaml");

const edgeNode = {
  apiVersion: "edgeshift.dev/v1alpha1",
  kind: "EdgeNode",
  metadata: { name: "edge", uid: "u-1" },
  spec: {
    nodeSelector: { matchLabels: { "node-role.edgeshift.dev/edge": "" } },
    registry: { repository: "registry.example/checkpoints" },
  },
} as unknown as EdgeNode;
const agents = agentDaemonSet(edgeNode, {
  namespace: deployment?.metadata?.namespace ?? "",
  image: "img:1",
});

describe("ServiceMonitor", () => {
  it("selects the operator's metrics Service only, in its namespace, by a port it has", () => {
    const chosen = services.filter(
      (s) =>
        (serviceMonitor.spec.namespaceSelector?.matchNames ?? []).includes(
          s.metadata?.namespace ?? "",
        ) && selects(serviceMonitor.spec.selector, s.metadata?.labels ?? {}),
    );
    expect(chosen.map((s) => s.metadata?.name)).toEqual(["edgeshift-operator-metrics"]);
    const svc = chosen[0] as V1Service;
    const port = serviceMonitor.spec.endpoints?.[0]?.port;
    const servicePort = svc.spec?.ports?.find((p) => p.name === port);
    expect(servicePort, `port ${port}`).toBeDefined();
    // ... whose selector and target port reach the operator pods' named port.
    const tmpl = deployment?.spec?.template;
    expect(selects({ matchLabels: svc.spec?.selector }, tmpl?.metadata?.labels ?? {})).toBe(true);
    const ports = tmpl?.spec?.containers.flatMap((c) => c.ports ?? []) ?? [];
    expect(ports.map((p) => p.name)).toContain(servicePort?.targetPort);
  });
});

describe("PodMonitor", () => {
  const pod = agents.spec?.template;
  it("selects an EdgeNode's agent pods in the operator's namespace, by their port's name", () => {
    expect(podMonitor.spec.namespaceSelector?.matchNames).toEqual([agents.metadata?.namespace]);
    expect(selects(podMonitor.spec.selector, pod?.metadata?.labels ?? {})).toBe(true);
    const ports = pod?.spec?.containers.flatMap((c) => c.ports ?? []) ?? [];
    expect(ports).toContainEqual(
      expect.objectContaining({ name: podMonitor.spec.podMetricsEndpoints?.[0]?.port }),
    );
  });

  it("selects neither the operator pods nor NATS", () => {
    const others = [...operatorObjects, ...natsObjects].flatMap((o) =>
      o.kind === "Deployment" || o.kind === "StatefulSet"
        ? [(o as V1Deployment).spec?.template.metadata?.labels ?? {}]
        : [],
    );
    expect(others.length).toBeGreaterThan(1);
    for (const labels of others) expect(selects(podMonitor.spec.selector, labels)).toBe(false);
  });
});

describe("translation into scrape configs", () => {
  it("keeps by the selector and the port, labels targets as the Prometheus Operator does", () => {
    const [sm] = scrapeConfigs(serviceMonitor, { interval: "2s", kubeconfigFile: "/k" });
    expect(sm).toMatchObject({
      job_name: "serviceMonitor/edgeshift-system/edgeshift-operator/0",
      scrape_interval: "2s",
      scrape_timeout: "2s",
      metrics_path: "/metrics",
      kubernetes_sd_configs: [
        { role: "endpoints", kubeconfig_file: "/k", namespaces: { names: ["edgeshift-system"] } },
      ],
    });
    expect(sm?.relabel_configs).toContainEqual({
      action: "keep",
      source_labels: [
        "__meta_kubernetes_service_label_app_kubernetes_io_name",
        "__meta_kubernetes_service_labelpresent_app_kubernetes_io_name",
      ],
      regex: "(edgeshift-operator);true",
    });
    expect(sm?.relabel_configs).toContainEqual({
      action: "keep",
      source_labels: ["__meta_kubernetes_endpoint_port_name"],
      regex: "http-metrics",
    });
    const [pm] = scrapeConfigs(podMonitor);
    expect(pm).toMatchObject({
      job_name: "podMonitor/edgeshift-system/edgeshift-agent/0",
      scrape_interval: "15s",
      kubernetes_sd_configs: [{ role: "pod", namespaces: { names: ["edgeshift-system"] } }],
    });
    expect(pm?.relabel_configs).toContainEqual({
      action: "keep",
      source_labels: ["__meta_kubernetes_pod_container_port_name"],
      regex: "metrics",
    });
    const targets = (pm?.relabel_configs ?? []).map((r) => r.target_label).filter(Boolean);
    expect(targets).toEqual(expect.arrayContaining(["namespace", "pod", "container", "job"]));
  });

  it("refuses a field it does not translate instead of ignoring it", () => {
    const withTargetLabels = {
      ...serviceMonitor,
      spec: { ...serviceMonitor.spec, targetLabels: ["x"] },
    } as unknown as Monitor;
    expect(() => scrapeConfigs(withTargetLabels)).toThrow(/does not handle targetLabels/);
    const withRelabel = {
      ...podMonitor,
      spec: {
        ...podMonitor.spec,
        podMetricsEndpoints: [{ port: "metrics", relabelings: [] }],
      },
    } as unknown as Monitor;
    expect(() => scrapeConfigs(withRelabel)).toThrow(/does not handle relabelings/);
  });

  it("needs Kubernetes discovery, which Debian's build lacks; as HTTP SD it is a valid config", async () => {
    const { promtool } = await prometheusBinaries();
    const dir = await mkdtemp(join(tmpdir(), "edgeshift-promcfg-"));
    const check = (file: string) =>
      run(promtool, ["check", "config", file], { cwd: dir }).then(
        (r) => ({ code: 0, out: `${r.stdout}${r.stderr}` }),
        (e: { code?: number; stdout?: string; stderr?: string }) => ({
          code: e.code ?? -1,
          out: `${e.stdout}${e.stderr}`,
        }),
      );
    try {
      await writeFile(join(dir, "edgeshift.rules.yaml"), ruleFileYaml());
      await writeFile(join(dir, "kubeconfig"), "apiVersion: v1\nkind: Config\n");
      const config = prometheusConfig({
        monitors: [serviceMonitor, podMonitor],
        ruleFiles: ["edgeshift.rules.yaml"],
        scrape: { interval: "2s", kubeconfigFile: "kubeconfig" },
        evaluationInterval: "2s",
      });
      // What the Prometheus Operator would hand a Prometheus: Debian's refuses it.
      await writeFile(join(dir, "operator-style.yml"), stringify(config));
      const refused = await check("operator-style.yml");
      expect(refused.out).toContain("field kubernetes_sd_configs not found");
      expect(refused.code).toBe(1);

      const { server, kubernetesSd } = viaHttpSd(config, "http://127.0.0.1:9", "2s");
      expect(Object.keys(kubernetesSd)).toEqual(config.scrape_configs.map((c) => c.job_name));
      expect(Object.values(kubernetesSd).map((sd) => sd.map((s) => s.role))).toEqual([
        ["endpoints"],
        ["pod"],
      ]);
      // The relabeling is the same in both.
      expect(server.scrape_configs.map((c) => c.relabel_configs)).toEqual(
        config.scrape_configs.map((c) => c.relabel_configs),
      );
      await writeFile(join(dir, "prometheus.yml"), stringify(server));
      const r = await check("prometheus.yml");
      expect(r.out).toContain("SUCCESS: prometheus.yml is valid");
      expect(r.out).toContain(`SUCCESS: ${alertRules().length} rules found`);
      expect(r.code, r.out).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
