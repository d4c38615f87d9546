// The Helm chart rendered by Helm itself: lint, the same objects as the
// kustomize bundle at default values, bad values refused by values.schema.json,
// every exposed value changing what it should, and the rendered objects
// accepted by the real API server. test/nodes/helm.test.ts installs it on
// real nodes.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type {
  KubernetesObject,
  V1Container,
  V1Deployment,
  V1PodSpec,
  V1RoleBinding,
  V1Secret,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { decodeKey } from "../../operator/config.ts";
import { type HelmResult, helmRunner } from "../cluster/helm.ts";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");
const CHART = "charts/edgeshift";
const NS = "edgeshift-system";

let home = "";
let helm: (args: string[]) => Promise<HelmResult>;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "edgeshift-helm-"));
  helm = helmRunner(inject("helm"), home);
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

type Obj = KubernetesObject & Record<string, unknown>;
const key = (o: KubernetesObject) =>
  `${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
const parseObjects = (text: string): Obj[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => !!o);

/** `helm template` of the chart; fails the test on a non-zero exit. */
async function render(args: string[] = [], namespace = NS): Promise<Obj[]> {
  const r = await helm(["template", "edgeshift", CHART, "-n", namespace, ...args]);
  expect(r.code, r.stderr).toBe(0);
  return parseObjects(r.stdout);
}
function find<T = Obj>(objects: Obj[], kind: string, name: string): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
  expect(found, `${kind} ${name}`).toHaveLength(1);
  return found[0] as T;
}
const podSpec = (objects: Obj[], name: string) =>
  find<V1Deployment>(objects, "Deployment", name).spec?.template.spec as V1PodSpec;
const container = (objects: Obj[], deployment: string, name: string) =>
  podSpec(objects, deployment).containers.find((c) => c.name === name) as V1Container;
const env = (c: V1Container, name: string) => c.env?.find((e) => e.name === name);
/** The NOTES Helm prints after an install (a client-side dry run needs no cluster). */
async function notes(args: string[] = []): Promise<string> {
  const r = await helm(["install", "edgeshift", CHART, "-n", NS, "--dry-run=client", ...args]);
  expect(r.code, r.stderr).toBe(0);
  const at = r.stdout.indexOf("\nNOTES:\n");
  expect(at).toBeGreaterThan(0);
  return r.stdout.slice(at);
}

describe("Helm chart", () => {
  it("passes helm lint, also --strict", async () => {
    for (const args of [[], ["--strict"]]) {
      const r = await helm(["lint", CHART, ...args]);
      expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  it("renders the kustomize bundle's objects at default values, differing only where documented", async () => {
    const { stdout } = await run(inject("kubectl"), ["kustomize", join(root, "manifests")], {
      maxBuffer: 32 * 1024 * 1024,
    });
    const bundle = parseObjects(stdout);
    const chart = await render(["--include-crds"]);
    // The one difference on purpose: Helm keeps the namespace on uninstall
    // (it holds the Secrets users create and the operator's Lease).
    const ns = find(chart, "Namespace", NS);
    expect(ns.metadata?.annotations).toEqual({ "helm.sh/resource-policy": "keep" });
    delete ns.metadata?.annotations;
    for (const o of chart) {
      if (o !== ns)
        expect(o.metadata?.annotations?.["helm.sh/resource-policy"], key(o)).toBe(undefined);
    }
    expect(chart.map(key).sort()).toEqual(bundle.map(key).sort());
    const byKey = new Map(chart.map((o) => [key(o), o]));
    for (const o of bundle) expect(byKey.get(key(o)), key(o)).toEqual(o);
    expect(bundle.length).toBeGreaterThanOrEqual(15);
  });

  it("refuses bad values at helm template with the schema's reason", async () => {
    const cases: [string[], RegExp][] = [
      [["--set", "operator.replicas=two"], /at '\/operator\/replicas': got string, want integer/],
      [["--set", "operator.replicas=0"], /at '\/operator\/replicas': minimum/],
      [["--set", "operatr.replicas=3"], /additional properties 'operatr' not allowed/],
      [["--set", "image.pullPolicy=Sometimes"], /at '\/image\/pullPolicy'/],
      [["--set", "nats.bundled=false"], /at '\/nats\/url': minLength: got 0, want 1/],
      [
        ["--set", "nats.bundled=false", "--set", "nats.url=http://nats:4222"],
        /at '\/nats\/url': 'http:\/\/nats:4222' does not match pattern/,
      ],
      [
        ["--set", "operator.resources.limits.memory=lots"],
        /at '\/operator\/resources\/limits\/memory'/,
      ],
      [
        ["--set", "operator.nodeSelector=edge"],
        /at '\/operator\/nodeSelector': got string, want object/,
      ],
      [
        ["--set-json", 'operator.tolerations=[{"key":"a","operater":"Exists"}]'],
        /at '\/operator\/tolerations\/0': additional properties 'operater' not allowed/,
      ],
      [["--set", "operator.priorityClassName=High_Priority"], /at '\/operator\/priorityClassName'/],
      [
        ["--set", "operator.env.EDGESHIFT_NATS_URL=nats://x:4222"],
        /at '\/operator\/env\/EDGESHIFT_NATS_URL': false schema/,
      ],
      [["--set", "registrySecret.create=true"], /at '\/registrySecret\/password': minLength/],
      [
        ["--set", "signingKeySecret.create=true", "--set", "signingKeySecret.key=short"],
        /at '\/signingKeySecret\/key'/,
      ],
      // A key in values without create would be ignored silently.
      [
        ["--set", `signingKeySecret.key=${"ab".repeat(32)}`],
        /at '\/signingKeySecret\/key': value must be ''/,
      ],
    ];
    for (const [args, reason] of cases) {
      const r = await helm(["template", "edgeshift", CHART, "-n", NS, ...args]);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr, args.join(" ")).toMatch(
        /values don't meet the specifications of the schema/,
      );
      expect(r.stderr, args.join(" ")).toMatch(reason);
      expect(r.stdout).toBe("");
    }
  });

  it("sets the image of the operator and of the monitors and agents it starts", async () => {
    const objects = await render([
      "--set",
      "image.repository=registry.example.com:5000/team/edgeshift",
      "--set",
      "image.tag=1.2.3",
      "--set",
      "image.pullPolicy=Always",
    ]);
    const c = container(objects, "edgeshift-operator", "operator");
    expect(c.image).toBe("registry.example.com:5000/team/edgeshift:1.2.3");
    expect(c.imagePullPolicy).toBe("Always");
    expect(env(c, "EDGESHIFT_MONITOR_IMAGE")?.value).toBe(c.image);
    expect(container(objects, "edgeshift-nats", "nats").image).toBe("nats:2.11-alpine");
    // Without a tag: the chart's appVersion, the bundle's tag.
    const plain = container(
      await render(["--set", "image.repository=r.example/es"]),
      "edgeshift-operator",
      "operator",
    );
    expect(plain.image).toBe("r.example/es:0.1.0");
  });

  it("sets replicas, resources, log level and further settings of the operator", async () => {
    const objects = await render([
      "--set",
      "operator.replicas=3",
      "--set",
      "operator.resources.requests.cpu=250m",
      "--set",
      "operator.resources.limits.memory=1Gi",
      "--set",
      "operator.logLevel=debug",
      "--set",
      "operator.env.EDGESHIFT_CHECKPOINT_TIMEOUT=600s",
    ]);
    expect(find<V1Deployment>(objects, "Deployment", "edgeshift-operator").spec?.replicas).toBe(3);
    const c = container(objects, "edgeshift-operator", "operator");
    // Values replace the bundle's resources as a whole (Helm merges the maps).
    expect(c.resources).toEqual({
      requests: { cpu: "250m", memory: "128Mi" },
      limits: { memory: "1Gi" },
    });
    expect(env(c, "EDGESHIFT_LOG_LEVEL")?.value).toBe("debug");
    expect(env(c, "EDGESHIFT_CHECKPOINT_TIMEOUT")?.value).toBe("600s");
    // The PDB still lets a drain take one replica.
    expect(find(objects, "PodDisruptionBudget", "edgeshift-operator").spec).toMatchObject({
      minAvailable: 1,
    });
  });

  it("places the operator and NATS by node selector, tolerations and priority class", async () => {
    const toleration = {
      key: "dedicated",
      operator: "Equal",
      value: "infra",
      effect: "NoSchedule",
    };
    const objects = await render([
      "--set",
      "operator.nodeSelector.node-role\\.kubernetes\\.io/infra=",
      "--set-json",
      `operator.tolerations=[${JSON.stringify(toleration)}]`,
      "--set",
      "operator.priorityClassName=system-cluster-critical",
      "--set",
      "nats.nodeSelector.kubernetes\\.io/os=linux",
      "--set",
      "nats.priorityClassName=infra-high",
    ]);
    const op = podSpec(objects, "edgeshift-operator");
    expect(op.nodeSelector).toEqual({ "node-role.kubernetes.io/infra": "" });
    expect(op.tolerations).toEqual([toleration]);
    expect(op.priorityClassName).toBe("system-cluster-critical");
    // The bundle's spread and edge-avoiding affinity stay.
    expect(op.affinity?.nodeAffinity).toBeDefined();
    expect(op.topologySpreadConstraints).toHaveLength(1);
    const nats = podSpec(objects, "edgeshift-nats");
    expect(nats.nodeSelector).toEqual({ "kubernetes.io/os": "linux" });
    expect(nats.priorityClassName).toBe("infra-high");
    expect(nats.tolerations).toBeUndefined();
    // At defaults none of these is set.
    const plain = await render();
    for (const d of ["edgeshift-operator", "edgeshift-nats"]) {
      const p = podSpec(plain, d);
      expect([p.nodeSelector, p.tolerations, p.priorityClassName], d).toEqual([
        undefined,
        undefined,
        undefined,
      ]);
    }
  });

  it("names the Secrets it is given, and tells the next steps with those names", async () => {
    const args = [
      "--set",
      "signingKeySecret.name=cluster-signing-key",
      "--set",
      "registrySecret.name=checkpoint-registry",
    ];
    const objects = await render(args);
    const c = container(objects, "edgeshift-operator", "operator");
    expect(env(c, "EDGESHIFT_SIGNING_KEY")?.valueFrom?.secretKeyRef).toEqual({
      name: "cluster-signing-key",
      key: "key",
    });
    // Referenced, not created.
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
    const text = await notes(args);
    expect(text).toContain(
      "openssl rand -hex 32 | kubectl -n edgeshift-system create secret generic cluster-signing-key --from-file=key=/dev/stdin",
    );
    expect(text).toContain(
      "kubectl -n edgeshift-system create secret generic checkpoint-registry --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=registry-auth.json",
    );
    expect(text).toMatch(
      /secretRef:\n\s+name: checkpoint-registry\n\s+namespace: edgeshift-system/,
    );
    expect(text).toContain(
      "kubectl apply --server-side --force-conflicts -f charts/edgeshift/crds/",
    );
    expect(text).toContain("kubectl get migrations -A -w");
    expect(text).toContain("kubectl edgeshift status");
  });

  it("creates the Secrets when asked, and keeps their values out of NOTES", async () => {
    const password = "pw-9f1c2e77";
    const args = [
      "--set",
      "signingKeySecret.create=true",
      "--set",
      "registrySecret.create=true",
      "--set",
      "registrySecret.server=registry.example.com:5000",
      "--set",
      "registrySecret.username=edgeshift-push",
      "--set",
      `registrySecret.password=${password}`,
    ];
    const first = await render(args);
    const key = find<V1Secret>(first, "Secret", "edgeshift-signing-key");
    const raw = Buffer.from(key.data?.key ?? "", "base64").toString();
    // A random key the operator's own validation accepts, new on every render
    // without a cluster (an upgrade reads the installed one back).
    expect(decodeKey(raw)?.length).toBe(32);
    const again = find<V1Secret>(await render(args), "Secret", "edgeshift-signing-key");
    expect(again.data?.key).not.toBe(key.data?.key);
    const given = "0123456789abcdef".repeat(4);
    const fixed = find<V1Secret>(
      await render([...args, "--set", `signingKeySecret.key=${given}`]),
      "Secret",
      "edgeshift-signing-key",
    );
    expect(Buffer.from(fixed.data?.key ?? "", "base64").toString()).toBe(given);

    const reg = find<V1Secret>(first, "Secret", "edgeshift-registry");
    expect(reg.type).toBe("kubernetes.io/dockerconfigjson");
    expect(reg.metadata?.namespace).toBe(NS);
    const config = JSON.parse(
      Buffer.from(reg.data?.[".dockerconfigjson"] ?? "", "base64").toString(),
    );
    expect(config).toEqual({
      auths: {
        "registry.example.com:5000": {
          username: "edgeshift-push",
          password,
          auth: Buffer.from(`edgeshift-push:${password}`).toString("base64"),
        },
      },
    });
    const text = await notes(args);
    expect(text).toContain("made by this chart");
    expect(text).not.toContain(password);
    expect(text).not.toContain(Buffer.from(password).toString("base64"));
    expect(text).not.toContain("openssl rand");
  });

  it("uses an existing NATS instead of the bundled one", async () => {
    const objects = await render([
      "--set",
      "nats.bundled=false",
      "--set",
      "nats.url=nats://nats.messaging.svc:4222",
      "--set",
      "nats.monitorUrl=nats://gateway.example.com:4222",
    ]);
    expect(objects.filter((o) => o.metadata?.name === "edgeshift-nats")).toEqual([]);
    const c = container(objects, "edgeshift-operator", "operator");
    expect(env(c, "EDGESHIFT_NATS_URL")?.value).toBe("nats://nats.messaging.svc:4222");
    expect(env(c, "EDGESHIFT_MONITOR_NATS_URL")?.value).toBe("nats://gateway.example.com:4222");
    expect(
      await notes(["--set", "nats.bundled=false", "--set", "nats.url=nats://n.example:4222"]),
    ).toMatch(/using the NATS at nats:\/\/n\.example:4222/);
  });

  it("installs into the release's namespace, with or without the Namespace object", async () => {
    const objects = await render([], "edge-ops");
    expect(find(objects, "Namespace", "edge-ops").metadata?.labels).toMatchObject({
      "pod-security.kubernetes.io/enforce": "privileged",
    });
    for (const o of objects) {
      if (
        ![
          "Namespace",
          "ClusterRole",
          "ClusterRoleBinding",
          "ValidatingAdmissionPolicy",
          "ValidatingAdmissionPolicyBinding",
        ].includes(o.kind ?? "")
      )
        expect(o.metadata?.namespace, key(o)).toBe("edge-ops");
    }
    for (const b of objects.filter((o) =>
      o.kind?.endsWith("RoleBinding"),
    ) as unknown as V1RoleBinding[]) {
      for (const s of b.subjects ?? []) expect(s.namespace, key(b)).toBe("edge-ops");
    }
    const c = container(objects, "edgeshift-operator", "operator");
    expect(env(c, "EDGESHIFT_NATS_URL")?.value).toBe("nats://edgeshift-nats.edge-ops.svc:4222");
    expect(JSON.stringify(objects)).not.toContain("edgeshift-system");
    const without = await render(["--set", "namespace.create=false"]);
    expect(without.filter((o) => o.kind === "Namespace")).toEqual([]);
  });

  it("adds the Prometheus Operator objects of manifests/prometheus when asked", async () => {
    expect(
      (await render()).filter((o) => o.apiVersion?.startsWith("monitoring.coreos.com")),
    ).toEqual([]);
    const objects = await render(
      [
        "--set",
        "prometheus.monitors=true",
        "--set",
        "prometheus.rules=true",
        "--set",
        "prometheus.labels.release=kube-prometheus-stack",
      ],
      "edge-ops",
    );
    const monitoring = objects.filter((o) => o.apiVersion?.startsWith("monitoring.coreos.com"));
    expect(monitoring.map((o) => o.kind)).toContain("ServiceMonitor");
    expect(monitoring.map((o) => o.kind)).toContain("PrometheusRule");
    for (const o of monitoring) {
      expect(o.metadata?.namespace).toBe("edge-ops");
      expect(o.metadata?.labels?.release).toBe("kube-prometheus-stack");
      const sel = (o.spec as { namespaceSelector?: { matchNames?: string[] } }).namespaceSelector;
      if (sel) expect(sel.matchNames).toEqual(["edge-ops"]);
    }
    // Prometheus' own placeholders pass through Helm untouched.
    expect(JSON.stringify(find(objects, "PrometheusRule", "edgeshift"))).toContain("{{ $value");
    const rulesOnly = await render(["--set", "prometheus.rules=true"]);
    expect(
      rulesOnly.filter((o) => o.apiVersion?.startsWith("monitoring.coreos.com")).map((o) => o.kind),
    ).toEqual(["PrometheusRule"]);
  });

  it("renders objects the API server accepts at non-default values (server-side dry run)", async () => {
    const namespace = "chart-dry-run";
    const kc = ["--kubeconfig", inject("kubeconfig")];
    const kubectl = (args: string[], input?: string) =>
      new Promise<string>((res, rej) => {
        const child = execFile(inject("kubectl"), [...kc, ...args], (err, out, stderr) =>
          err ? rej(new Error(stderr || err.message)) : res(out),
        );
        if (input !== undefined) child.stdin?.end(input);
      });
    await kubectl(["create", "namespace", namespace]);
    try {
      const r = await helm([
        "template",
        "edgeshift",
        CHART,
        "-n",
        namespace,
        "--include-crds",
        "--set",
        "operator.replicas=1",
        "--set-json",
        'operator.tolerations=[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]',
        "--set",
        "operator.priorityClassName=system-cluster-critical",
        "--set",
        "nats.nodeSelector.kubernetes\\.io/os=linux",
        "--set",
        "signingKeySecret.create=true",
        "--set",
        "registrySecret.create=true",
        "--set",
        "registrySecret.server=r.example:5000",
        "--set",
        "registrySecret.username=u",
        "--set",
        "registrySecret.password=p",
      ]);
      expect(r.code, r.stderr).toBe(0);
      // --force-conflicts: the cluster-scoped RBAC objects share their names with
      // manifests/base, which other test files apply for the operator (manager
      // "kubectl", subjects in edgeshift-system); what is checked here is that
      // the API server accepts these objects, not who owns the fields.
      const out = await kubectl(
        [
          "apply",
          "--server-side",
          "--force-conflicts",
          "--dry-run=server",
          "--field-manager=chart-test",
          "-f",
          "-",
        ],
        r.stdout,
      );
      // Every object, as the API server would have stored it.
      expect(out.trim().split("\n")).toHaveLength(parseObjects(r.stdout).length);
      expect(out).toMatch(
        /deployment\.apps\/edgeshift-operator serverside-applied \(server dry run\)/,
      );
    } finally {
      await kubectl(["delete", "namespace", namespace, "--wait=false"]);
    }
  });
});
