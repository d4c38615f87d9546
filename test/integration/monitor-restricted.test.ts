// The injected monitor in a namespace that enforces Pod Security "restricted":
// the real API server's PodSecurity admission judges the operator's own
// injection body on the ephemeralcontainers subresource, and the real monitor
// process, run as the user that body names, still reads a workload owned by
// another user (root) from /proc.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, copyFile, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import type { V1EphemeralContainer, V1Pod } from "@kubernetes/client-node";
import { build } from "esbuild";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { strategicMergePatch } from "../../operator/kube/patch.ts";
import { type MonitorSettings, missingMonitors } from "../../operator/monitor/inject.ts";
import { decodeAndVerify, type SignedSample, subjectFor } from "../../sidecar/protocol.ts";
import { kubeClients, rejection, uniqueName, waitFor } from "../support/kube.ts";
import { repoRoot } from "../support/operator.ts";

const kube = kubeClients(inject("kubeconfig"));
const natsUrl = inject("natsUrl");
const NAMESPACE = uniqueName("restricted");
const settings: MonitorSettings = {
  image: "ghcr.io/edgeshift/edgeshift:test",
  natsUrl,
  intervalSeconds: 0.5,
};
const KEY_HEX = "3c".repeat(32);

/** Compliant with "restricted" container by container, with no pod-level securityContext to inherit. */
function restrictedPod(name: string): V1Pod {
  return {
    metadata: { name, namespace: NAMESPACE },
    spec: {
      nodeName: "restricted-edge-1",
      containers: [
        {
          name: "app",
          image: "registry.k8s.io/pause:3.10",
          resources: { limits: { cpu: "500m", memory: "128Mi" } },
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 1000,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ["ALL"] },
            seccompProfile: { type: "RuntimeDefault" },
          },
        },
      ],
    },
  };
}

async function addEphemeral(pod: string, containers: V1EphemeralContainer[]): Promise<V1Pod> {
  // Exactly the request the pod watcher makes.
  return kube.core.patchNamespacedPodEphemeralcontainers(
    { name: pod, namespace: NAMESPACE, body: { spec: { ephemeralContainers: containers } } },
    strategicMergePatch,
  );
}

const children: ChildProcess[] = [];
const dirs: string[] = [];
let nc: NatsConnection | undefined;

beforeAll(async () => {
  await kube.core.createNamespace({
    body: {
      metadata: {
        name: NAMESPACE,
        labels: {
          "pod-security.kubernetes.io/enforce": "restricted",
          "pod-security.kubernetes.io/enforce-version": "latest",
        },
      },
    },
  });
  await waitFor(
    () => kube.core.readNamespacedServiceAccount({ name: "default", namespace: NAMESPACE }),
    { timeoutMs: 20_000, description: `the default ServiceAccount in ${NAMESPACE}` },
  );
});

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGKILL");
      await once(c, "exit");
    }
  }
  await nc?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await kube.core.deleteNamespace({ name: NAMESPACE }).catch(() => {});
});

describe("monitor injection under Pod Security restricted", () => {
  it("admits the operator's monitor on the ephemeralcontainers subresource, and refuses one that leaves out the restricted fields", async () => {
    const created = await kube.core.createNamespacedPod({
      namespace: NAMESPACE,
      body: restrictedPod("web"),
    });
    const body = missingMonitors(created, undefined, settings);
    expect(body).toHaveLength(1);

    // The namespace really enforces: the monitor as it was injected before
    // (no runAsNonRoot, no seccompProfile) is refused by PodSecurity.
    const { runAsNonRoot, seccompProfile, runAsUser, runAsGroup, ...loose } =
      body[0]?.securityContext ?? {};
    const refused = await rejection(
      addEphemeral("web", [{ ...(body[0] as V1EphemeralContainer), securityContext: loose }]),
    );
    expect(refused.code).toBe(403);
    expect(refused.body.message).toMatch(/violates PodSecurity "restricted:latest"/);
    expect(refused.body.message).toMatch(/runAsNonRoot/);
    expect(refused.body.message).toMatch(/seccompProfile/);

    const patched = await addEphemeral("web", body);
    const monitor = patched.spec?.ephemeralContainers?.find((c) => c.name === body[0]?.name);
    expect(monitor?.targetContainerName).toBe("app");
    expect(monitor?.securityContext).toEqual(body[0]?.securityContext);
    expect({ runAsNonRoot, seccompProfile }).toEqual({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(runAsUser).toBeGreaterThan(0);
    expect(runAsGroup).toBeGreaterThan(0);
  });

  it("runs the real monitor as the body's non-root user and still measures a root-owned workload", async () => {
    const [monitor] = missingMonitors(
      {
        ...restrictedPod("burner"),
        metadata: { name: "burner", namespace: NAMESPACE, uid: "u-burner" },
      },
      undefined,
      settings,
    );
    const uid = monitor?.securityContext?.runAsUser;
    const gid = monitor?.securityContext?.runAsGroup;
    expect(uid).toBeGreaterThan(0);
    expect(process.getuid?.()).toBe(0);

    // The workload: a busy loop owned by root, another user than the monitor's.
    const burner = spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" });
    children.push(burner);

    // The body's own environment; the key comes from the pod's Secret in a cluster.
    const env: Record<string, string> = { PATH: process.env.PATH ?? "" };
    for (const e of monitor?.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    env.EDGESHIFT_SIGNING_KEY = KEY_HEX;
    // On a host the monitor does not share a PID namespace with only its target.
    env.EDGESHIFT_ROOT_PID = String(burner.pid);

    nc = await connect({ servers: natsUrl });
    const samples: SignedSample[] = [];
    const rejected: string[] = [];
    const subject = subjectFor(
      env.EDGESHIFT_NODE ?? "",
      env.EDGESHIFT_NAMESPACE ?? "",
      env.EDGESHIFT_POD ?? "",
      env.EDGESHIFT_CONTAINER ?? "",
    );
    const state = new Map();
    const sub = nc.subscribe(subject, {
      callback: (_err, msg) => {
        const r = decodeAndVerify(
          msg.data,
          msg.subject,
          () => Buffer.from(KEY_HEX, "hex"),
          state,
          Date.now(),
        );
        if (r.ok) samples.push(r.sample);
        else rejected.push(r.reason);
      },
    });

    // The monitor's user must reach Node and the program: the checkout (and
    // TMPDIR) may sit in a directory only root may enter, as a CI clone in a
    // mktemp directory does. So both go into a directory of their own that
    // every user may read: Node's binary, and the monitor bundled into one file.
    const dir = await mkdtemp("/tmp/edgeshift-monitor-");
    dirs.push(dir);
    await chmod(dir, 0o755);
    const nodeBin = join(dir, "node");
    await copyFile(process.execPath, nodeBin);
    await chmod(nodeBin, 0o755);
    const program = join(dir, "monitor.cjs");
    await build({
      entryPoints: [join(repoRoot, "sidecar/main.ts")],
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node24",
      outfile: program,
      logLevel: "silent",
    });
    await chmod(program, 0o644);

    let log = "";
    const mon = spawn(nodeBin, [program], {
      cwd: dir,
      env,
      uid,
      gid,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(mon);
    mon.stdout?.on("data", (d) => (log += d));
    mon.stderr?.on("data", (d) => (log += d));
    try {
      await waitFor(() => samples.length >= 3 || mon.exitCode !== null, {
        timeoutMs: 20_000,
        description: "three samples from the non-root monitor",
      });
    } finally {
      sub.unsubscribe();
    }
    expect(mon.exitCode, log).toBeNull();
    expect(rejected).toEqual([]);
    // A busy loop is about one core; a monitor that could not read the
    // target's /proc/<pid>/stat and status would see no target at all.
    const last = samples[samples.length - 1];
    expect(last?.cpuCores).toBeGreaterThan(0.5);
    expect(last?.memoryBytes).toBeGreaterThan(1024 * 1024);
  });
});
