// A real Prometheus (Debian's 2.42 server) on the cluster of real nodes,
// configured from the manifests: the jobs are the Prometheus Operator's
// translation of manifests/prometheus/servicemonitor.yaml and podmonitor.yaml
// (test/support/monitors.ts), the rules are rules.yaml's spec.groups. After a
// real migration (a busybox pod from edge-1 to cloud-1), every target is up,
// every dashboard query and every alert's compared operand returns series, and
// the rules evaluate cleanly with nothing firing.
//
// Where it runs: the host's binaries and files, in the cluster's network
// namespace (beside the API server), where the nodes' pod routes are: nothing
// is routed from the host's own network to pod IPs, by design. The test reaches
// its HTTP API through a relay. Debian builds its server without Kubernetes
// service discovery, so Prometheus' own discovery/kubernetes of the same
// release (kubernetes-sd, built by test/cluster/install-prometheus.sh) runs the
// jobs' kubernetes_sd_configs and hands the targets with their meta labels to
// the server over HTTP SD; the server's relabel_configs do the selecting.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { DiscoveryV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { EDGENODE_LABEL, type Migration } from "../../operator/api/v1alpha1.ts";
import { SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import type { HostRelay } from "../cluster/forward.ts";
import { type Managed, startProcess, stopProcess, tailLog, waitUntil } from "../cluster/process.ts";
import { type Monitor, prometheusConfig, readMonitor, viaHttpSd } from "../support/monitors.ts";
import {
  alertRules,
  dashboardQueries,
  grafanaExpand,
  prometheusBinaries,
  ruleFileYaml,
  thresholdOperands,
} from "../support/prometheus.ts";
import { awaitMigration, cleanUp, createMigration, nodesByRole } from "./moves.ts";
import { reachFromHost } from "./node-control.ts";
import { apply, busyboxPod, clients, cluster, podReady, waitForPod } from "./support.ts";

const run = promisify(execFile);
const TEST = "prometheus";
const POD = "prom-counter";
const MIGRATION = "prom-counter";
/** Scrape, evaluation and HTTP SD refresh interval: short, for a short test. */
const INTERVAL = "2s";
/** The dashboard's $__rate_interval here: Grafana's floor is 4 scrape intervals; room for a busy machine. */
const RATE_WINDOW = "30s";

const serviceMonitor = readMonitor("servicemonitor.yaml");
const podMonitor = readMonitor("podmonitor.yaml");
const jobOf = (m: Monitor) =>
  `${m.kind === "ServiceMonitor" ? "serviceMonitor" : "podMonitor"}/${m.metadata.namespace}/${m.metadata.name}/0`;

let dir = "";
let startedAt = 0;
const procs: Managed[] = [];
const relays: HostRelay[] = [];
let api = "";

interface Target {
  labels: Record<string, string>;
  scrapePool: string;
  health: "up" | "down" | "unknown";
  lastError: string;
  lastScrape: string;
}

async function get<T>(path: string): Promise<T> {
  const r = await fetch(`${api}${path}`);
  const body = (await r.json()) as { status: string; data: T; error?: string };
  if (body.status !== "success") throw new Error(`${path}: ${body.error}`);
  return body.data;
}

async function query(
  expr: string,
): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const d = await get<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(
    `/api/v1/query?query=${encodeURIComponent(expr)}`,
  );
  return d.result;
}

async function activeTargets(): Promise<Target[]> {
  return (await get<{ activeTargets: Target[] }>("/api/v1/targets?state=active")).activeTargets;
}

/** Runs `bin` in the cluster's network namespace (host filesystem), dying with the test. */
function inClusterNetwork(name: string, bin: string, args: string[]): Managed {
  const [first] = cluster().nodes;
  if (!first) throw new Error("no nodes");
  const p = startProcess(
    name,
    "nsenter",
    ["-t", String(first.clusterPid), "-n", "--", bin, ...args],
    {
      logDir: dir,
    },
  );
  procs.push(p);
  return p;
}

/** A TCP port nothing listens on in the cluster's network namespace. */
async function freeClusterPort(): Promise<number> {
  const [first] = cluster().nodes;
  const { stdout } = await run("nsenter", [
    "-t",
    String(first?.clusterPid),
    "-n",
    "--",
    "ss",
    "-Hltn",
  ]);
  // Local Address:Port is the fourth column ("127.0.0.1:6443", "[::]:5000", "*:5001").
  const used = new Set(
    stdout.split("\n").map((l) => Number(/:(\d+)$/.exec(l.trim().split(/\s+/)[3] ?? "")?.[1])),
  );
  for (;;) {
    const p = 20_000 + Math.floor(Math.random() * 20_000);
    if (!used.has(p)) return p;
  }
}

/** The cluster's kubeconfig with the API server's address as seen inside the cluster network. */
async function innerKubeconfig(): Promise<string> {
  const discovery = clients().kc.makeApiClient(DiscoveryV1Api);
  const slices = await discovery.listNamespacedEndpointSlice({
    namespace: "default",
    labelSelector: "kubernetes.io/service-name=kubernetes",
  });
  const slice = slices.items[0];
  const address = slice?.endpoints?.[0]?.addresses[0];
  const port = slice?.ports?.find((p) => p.name === "https")?.port;
  if (!address || !port) throw new Error("no endpoint for the kubernetes Service");
  const kc = parse(await readFile(cluster().kubeconfig, "utf8")) as {
    clusters: { cluster: { server: string } }[];
  };
  for (const c of kc.clusters) c.cluster.server = `https://${address}:${port}`;
  const file = join(dir, "kubeconfig");
  await writeFile(file, stringify(kc), { mode: 0o600 });
  return file;
}

async function startPrometheus(): Promise<void> {
  const bins = await prometheusBinaries();
  const kubeconfig = await innerKubeconfig();
  await writeFile(join(dir, "edgeshift.rules.yaml"), ruleFileYaml());
  const config = prometheusConfig({
    monitors: [serviceMonitor, podMonitor],
    ruleFiles: ["edgeshift.rules.yaml"],
    scrape: { interval: INTERVAL, kubeconfigFile: kubeconfig },
    evaluationInterval: INTERVAL,
  });
  const sdPort = await freeClusterPort();
  const { server, kubernetesSd } = viaHttpSd(config, `http://127.0.0.1:${sdPort}`, INTERVAL);
  await writeFile(join(dir, "kubernetes-sd.yml"), stringify(kubernetesSd));
  const sd = inClusterNetwork("kubernetes-sd", bins.kubernetesSd, [
    "-config",
    join(dir, "kubernetes-sd.yml"),
    "-listen",
    `127.0.0.1:${sdPort}`,
  ]);
  await writeFile(join(dir, "prometheus.yml"), stringify(server));
  const port = await freeClusterPort();
  startedAt = Date.now();
  const prom = inClusterNetwork("prometheus", bins.prometheus, [
    `--config.file=${join(dir, "prometheus.yml")}`,
    `--storage.tsdb.path=${join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ]);
  const relay = await reachFromHost("127.0.0.1", port, dir);
  relays.push(relay);
  api = `http://127.0.0.1:${relay.port}`;
  await waitUntil(
    "Prometheus ready",
    async () => ((await fetch(`${api}/-/ready`).catch(() => undefined))?.ok ? true : undefined),
    { timeoutMs: 60_000, intervalMs: 250, alive: [prom, sd] },
  ).catch(async (err) => {
    throw new Error(`${err}\n${await tailLog(prom)}\n${await tailLog(sd)}`);
  });
}

async function podsWith(namespace: string, labelSelector: string): Promise<V1Pod[]> {
  return (await clients().core.listNamespacedPod({ namespace, labelSelector })).items.filter(
    (p) => !p.metadata?.deletionTimestamp && p.status?.phase === "Running",
  );
}

const names = (pods: V1Pod[]) => pods.map((p) => p.metadata?.name ?? "").sort();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "edgeshift-prometheus-"));
  await startPrometheus();
});

afterAll(async () => {
  await cleanUp(cluster().appNamespace, TEST, [MIGRATION]).catch(() => {});
  for (const r of relays) await r.close();
  for (const p of procs.reverse()) await stopProcess(p);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("Prometheus on the real nodes, configured from the manifests", () => {
  it("reaches the operator and agent pods' addresses from its network", async () => {
    const [op] = await podsWith(SYSTEM_NAMESPACE, "app.kubernetes.io/name=edgeshift-operator");
    const [agent] = await podsWith(SYSTEM_NAMESPACE, `${EDGENODE_LABEL}=${cluster().edgeNode}`);
    for (const [pod, port, metric] of [
      [op, 8080, "edgeshift_leader"],
      [agent, 8081, "edgeshift_agent_steps_total"],
    ] as const) {
      const ip = pod?.status?.podIP ?? "";
      expect(ip, pod?.metadata?.name).toMatch(/^10\.88\./);
      const relay = await reachFromHost(ip, port, dir);
      try {
        const text = await (await fetch(`http://127.0.0.1:${relay.port}/metrics`)).text();
        expect(text).toContain(`${metric}`);
      } finally {
        await relay.close();
      }
    }
  });

  it("scrapes both operator replicas and every agent of the EdgeNode, nothing else", async () => {
    const operators = names(
      await podsWith(SYSTEM_NAMESPACE, "app.kubernetes.io/name=edgeshift-operator"),
    );
    const agents = names(
      await podsWith(SYSTEM_NAMESPACE, `${EDGENODE_LABEL}=${cluster().edgeNode}`),
    );
    expect(operators).toHaveLength(2);
    expect(agents.length).toBeGreaterThan(0);
    const targets = await waitUntil(
      "every operator and agent pod scraped and up",
      async () => {
        const t = await activeTargets();
        const up = (job: string) =>
          t
            .filter((x) => x.scrapePool === job && x.health === "up")
            .map((x) => x.labels.pod ?? "")
            .sort();
        const ops = up(jobOf(serviceMonitor));
        const ags = up(jobOf(podMonitor));
        return JSON.stringify(ops) === JSON.stringify(operators) &&
          agents.every((a) => ags.includes(a))
          ? t
          : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 1000 },
    ).catch(async (err) => {
      throw new Error(`${err}: ${JSON.stringify(await activeTargets(), null, 1).slice(0, 4000)}`);
    });
    // Every active target is up, each labelled as the Prometheus Operator labels them.
    expect(
      targets.filter((t) => t.health !== "up").map((t) => `${t.labels.pod}: ${t.lastError}`),
    ).toEqual([]);
    const sm = targets.filter((t) => t.scrapePool === jobOf(serviceMonitor));
    expect(sm.map((t) => t.labels.pod).sort()).toEqual(operators);
    for (const t of sm) {
      expect(t.labels).toMatchObject({
        job: "edgeshift-operator-metrics",
        service: "edgeshift-operator-metrics",
        namespace: SYSTEM_NAMESPACE,
        container: "operator",
        endpoint: "http-metrics",
      });
    }
    const pm = targets.filter((t) => t.scrapePool === jobOf(podMonitor));
    // The agents of every EdgeNode; no operator, NATS or other pod of the namespace.
    const allAgents = names(await podsWith(SYSTEM_NAMESPACE, "app.kubernetes.io/component=agent"));
    expect(pm.map((t) => t.labels.pod).sort()).toEqual(allAgents);
    for (const t of pm) {
      expect(t.labels).toMatchObject({
        job: `${SYSTEM_NAMESPACE}/edgeshift-agent`,
        namespace: SYSTEM_NAMESPACE,
        container: "agent",
        endpoint: "metrics",
      });
    }
  });

  it("after a migration, every dashboard query and alert operand has data, no alert fires", async () => {
    const ns = cluster().appNamespace;
    const { edge, cloud } = nodesByRole();
    await apply(
      busyboxPod(ns, POD, edge, "i=0; while true; do i=$((i+1)); echo $i; sleep 1; done", {
        labels: { test: TEST },
      }),
    );
    await waitForPod(ns, POD, "Ready", podReady);
    // Prometheus has scraped every target at least once before the migration, so
    // increase() over the test's range sees the counters move.
    await waitUntil(
      "a scrape of every target",
      async () => {
        const t = await activeTargets();
        return t.length > 0 && t.every((x) => x.health === "up") ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await createMigration(ns, MIGRATION, { podName: POD, targetNode: cloud }, { test: TEST });
    const m: Migration = await awaitMigration(ns, MIGRATION);
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("checkpoint");
    const finished = Date.now();

    // Every target scraped again after the migration ended, and the rate window
    // filled since Prometheus started: then each query answers for the state after.
    await waitUntil(
      "a scrape of every target after the migration",
      async () => {
        const t = await activeTargets();
        return t.length > 0 &&
          t.every((x) => x.health === "up" && Date.parse(x.lastScrape) > finished)
          ? true
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const range = () => `${Math.ceil((Date.now() - startedAt) / 1000) + 60}s`;
    const vars = () => ({ __rate_interval: RATE_WINDOW, __interval: INTERVAL, __range: range() });
    const dashboard = dashboardQueries().map((q) => ({
      where: q.where,
      expr: () => grafanaExpand(q.expr, vars()),
    }));
    // An alert's expression with its thresholds taken off (see thresholdOperands):
    // each part it compares must have series, or the alert can never fire.
    const alerts = alertRules().flatMap((r) =>
      thresholdOperands(r.expr).map((o, i) => ({
        where: `alert ${r.alert} operand ${i + 1}`,
        expr: () => o,
      })),
    );
    const all = [...dashboard, ...alerts];
    expect(dashboard.length).toBeGreaterThan(20);
    expect(alerts.length).toBeGreaterThanOrEqual(alertRules().length);
    const empty = async () => {
      const out: string[] = [];
      for (const q of all) {
        const e = q.expr();
        if ((await query(e)).length === 0) out.push(`${q.where}: ${e}`);
      }
      return out;
    };
    let last: string[] = [];
    await waitUntil(
      "every dashboard query and alert operand to return series",
      async () => {
        last = await empty();
        return last.length === 0 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 2000 },
    ).catch(() => undefined);
    expect(last).toEqual([]);

    // What the migration did, as the dashboard shows it.
    const value = async (e: string) => Number((await query(grafanaExpand(e, vars())))[0]?.value[1]);
    expect(await value("sum(edgeshift_leader)")).toBe(1);
    expect(
      await value(
        'sum(increase(edgeshift_migrations_total{policy="checkpoint",result="succeeded"}[$__range]))',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await value("sum(increase(edgeshift_checkpoint_size_bytes_count[$__range]))"),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await value(
        'sum(increase(edgeshift_agent_steps_total{step="checkpoint",result="success"}[$__range]))',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await value('sum(increase(edgeshift_agent_bytes_total{kind="uploaded"}[$__range]))'),
    ).toBeGreaterThan(0);

    // The rules as Prometheus evaluates them: loaded, healthy, none firing.
    const rules = await get<{
      groups: {
        name: string;
        rules: { name: string; health: string; lastError?: string; state: string }[];
      }[];
    }>("/api/v1/rules?type=alert");
    const loaded = rules.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual(
      alertRules()
        .map((r) => r.alert)
        .sort(),
    );
    expect(
      loaded.filter((r) => r.health !== "ok").map((r) => `${r.name}: ${r.health} ${r.lastError}`),
    ).toEqual([]);
    expect(loaded.filter((r) => r.state === "firing").map((r) => r.name)).toEqual([]);
  });
});
