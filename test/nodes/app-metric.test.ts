// Thresholds on the application's own metric, on real nodes: a small web
// application of our own (Node.js) counts the requests it serves and exposes
// the count on /metrics; the EdgeNode names that counter as a rate per minute.
// The real monitor, injected beside it under the restricted security context,
// reads it on localhost in the pod's network namespace. A load generator on
// cloud-1 sends requests through the application's Service until the rate
// passes the threshold: the decision engine creates the Migration with the
// metric, the value and the threshold in its reason.
import { afterEach, describe, expect, it } from "vitest";
import {
  type ApplicationThreshold,
  EDGENODE_PLURAL,
  type EdgeNode,
  GROUP,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { cleanUp, listMigrations, nodesByRole } from "./moves.ts";
import { apply, clients, cluster, podReady, waitForPod } from "./support.ts";

const ID = "appm";
const NS = () => cluster().appNamespace;
const PORT = 8080;

// Counts what it serves, in memory; every response closes its connection (a
// checkpoint never meets an open one between requests).
const WEB = `
const http = require("node:http");
let served = 0;
http.createServer((req, res) => {
  res.setHeader("connection", "close");
  if (req.url === "/metrics") {
    res.setHeader("content-type", "text/plain; version=0.0.4");
    res.end("# TYPE web_requests_total counter\\nweb_requests_total{path=\\"/\\"} " + served + "\\n");
    return;
  }
  served++;
  res.end("hello " + served + "\\n");
}).listen(${PORT});
`;

const THRESHOLD: ApplicationThreshold = {
  port: PORT,
  metric: "web_requests_total",
  matchers: [{ label: "path", value: "/" }],
  type: "Counter",
  per: "Minute",
  triggerValue: 100,
};

async function edgeNode(): Promise<EdgeNode> {
  return (await clients().custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    name: cluster().edgeNode,
  })) as EdgeNode;
}

/** Sets or removes the shared EdgeNode's application threshold; resolves once the operator has seen it. */
async function setThreshold(t: ApplicationThreshold | undefined): Promise<void> {
  const had = (await edgeNode()).spec.thresholds.application !== undefined;
  if (!t && !had) return;
  await clients().custom.patchClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    name: cluster().edgeNode,
    body: [
      t
        ? { op: "add", path: "/spec/thresholds/application", value: t }
        : { op: "remove", path: "/spec/thresholds/application" },
    ],
  });
  await waitUntil(
    "the operator to see the EdgeNode's change",
    async () => {
      const en = await edgeNode();
      return en.status?.observedGeneration === en.metadata.generation ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

let made: string[] = [];
afterEach(async () => {
  await setThreshold(undefined);
  await cleanUp(NS(), ID, made);
  made = [];
}, 180_000);

describe("thresholds on the application's own metric, real nodes", () => {
  it("the request rate through the Service passes 100 a minute: the Migration is created with the series, the value and the threshold", async () => {
    const { edge, cloud } = nodesByRole();
    await setThreshold(THRESHOLD);
    await apply(
      {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "appm-web", namespace: NS(), labels: { app: "appm-web", test: ID } },
        spec: {
          nodeName: edge,
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: "web",
              image: "node:24-alpine",
              imagePullPolicy: "IfNotPresent",
              command: ["node", "-e", WEB],
              ports: [{ containerPort: PORT }],
              // CRIU cannot dump io_uring instances; keep libuv on its thread pool.
              env: [{ name: "UV_USE_IO_URING", value: "0" }],
              readinessProbe: { tcpSocket: { port: PORT }, periodSeconds: 1 },
              resources: {
                requests: { cpu: "10m", memory: "32Mi" },
                limits: { cpu: "500m", memory: "128Mi" },
              },
            },
          ],
        },
      },
      {
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "appm-web", namespace: NS(), labels: { test: ID } },
        spec: { selector: { app: "appm-web" }, ports: [{ port: PORT, targetPort: PORT }] },
      },
    );
    await waitForPod(NS(), "appm-web", "Ready", podReady);
    // Idle, the monitor reads the counter (a rate of 0): the EdgeNode counts a reading.
    await waitUntil(
      "the monitor reading the application's metric",
      async () => ((await edgeNode()).status?.applicationMetric?.reading ?? 0) >= 1 || undefined,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const mine = async () =>
      (await listMigrations(NS())).filter((m: Migration) => m.spec.podName === "appm-web");
    expect(await mine()).toEqual([]);
    // About 20 requests a second through the Service, from cloud-1 (no monitor there).
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "appm-load", namespace: NS(), labels: { test: ID } },
      spec: {
        nodeName: cloud,
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: "load",
            image: "busybox:1.37",
            imagePullPolicy: "IfNotPresent",
            command: [
              "sh",
              "-c",
              `while :; do wget -q -O /dev/null http://appm-web:${PORT}/ || echo failed; sleep 0.05; done`,
            ],
            resources: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "32Mi" } },
          },
        ],
      },
    });
    const started = Date.now();
    const m = await waitUntil("the Migration for the request rate", async () => (await mine())[0], {
      timeoutMs: 120_000,
      intervalMs: 250,
    });
    made.push(m.metadata.name ?? "");
    const after = (Date.now() - started) / 1000;
    console.log(
      `[measure] request rate: Migration ${m.metadata.name} created ${after.toFixed(1)} s after the load started (window ${m.spec.reason?.windowSeconds} s): ${m.spec.reason?.series} at ${m.spec.reason?.value}, trigger ${m.spec.reason?.threshold}`,
    );
    expect(m.spec.reason).toMatchObject({
      type: "ThresholdExceeded",
      metric: "application",
      threshold: 100,
      series: 'web_requests_total{path="/"} rate per minute',
    });
    expect(m.spec.reason?.value).toBeGreaterThan(100);
    expect(m.spec.containers).toEqual(["web"]);
  }, 300_000);
});
