// The small web application of our own that the application-metric and
// return tests run on real nodes: it counts the requests it serves, in memory
// (the state a checkpoint moves), and exposes the count on /metrics. A load
// generator sends requests through its Service.
import type { ApplicationThreshold } from "../../operator/api/v1alpha1.ts";
import { kubectl } from "./support.ts";

export const WEB_PORT = 8080;

// Every response closes its connection (a checkpoint never meets an open one between requests).
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
}).listen(${WEB_PORT});
`;

/** web_requests_total{path="/"} as a rate per minute, above 100. */
export const REQUEST_RATE: ApplicationThreshold = {
  port: WEB_PORT,
  metric: "web_requests_total",
  matchers: [{ label: "path", value: "/" }],
  type: "Counter",
  per: "Minute",
  triggerValue: 100,
};

/** The web application, pinned to `node`, and its Service (selector app=<name>). */
export function webApp(namespace: string, name: string, node: string, test: string): object[] {
  return [
    {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, labels: { app: name, test } },
      spec: {
        nodeName: node,
        terminationGracePeriodSeconds: 1,
        // Node.js opens an io_uring for its sockets, which CRIU cannot dump;
        // containerd's default seccomp profile refuses io_uring_setup (README, Limitations).
        securityContext: { seccompProfile: { type: "RuntimeDefault" } },
        containers: [
          {
            name: "web",
            image: "node:24-alpine",
            imagePullPolicy: "IfNotPresent",
            command: ["node", "-e", WEB],
            ports: [{ containerPort: WEB_PORT }],
            // CRIU cannot dump io_uring instances; keep libuv on its thread pool.
            env: [{ name: "UV_USE_IO_URING", value: "0" }],
            readinessProbe: { tcpSocket: { port: WEB_PORT }, periodSeconds: 1 },
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
      metadata: { name, namespace, labels: { test } },
      spec: { selector: { app: name }, ports: [{ port: WEB_PORT, targetPort: WEB_PORT }] },
    },
  ];
}

/** About 20 requests a second through the Service, from `node`. */
export function loadPod(
  namespace: string,
  name: string,
  node: string,
  service: string,
  test: string,
): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { test } },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: "load",
          image: "busybox:1.37",
          imagePullPolicy: "IfNotPresent",
          command: [
            "sh",
            "-c",
            `while :; do wget -q -O /dev/null http://${service}:${WEB_PORT}/ || echo failed; sleep 0.05; done`,
          ],
          resources: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "32Mi" } },
        },
      ],
    },
  };
}

/** The requests the application in `pod` has served, read on its own localhost. */
export async function served(namespace: string, pod: string): Promise<number> {
  const text = await kubectl([
    "-n",
    namespace,
    "exec",
    pod,
    "-c",
    "web",
    "--",
    "wget",
    "-q",
    "-O",
    "-",
    `http://127.0.0.1:${WEB_PORT}/metrics`,
  ]);
  const m = text.match(/^web_requests_total\{path="\/"\} (\d+)$/m);
  if (!m) throw new Error(`no request count in ${JSON.stringify(text)}`);
  return Number(m[1]);
}
