import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { makePki } from "./pki.ts";
import {
  freePort,
  type Managed,
  startProcess,
  stopProcess,
  tailLog,
  waitUntil,
} from "./process.ts";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface ClusterOptions {
  /** Install the CRDs from crds/ and wait until they are Established. */
  installCrds?: boolean;
  nats?: boolean;
  registry?: boolean;
  log?: (msg: string) => void;
}

export interface RegistryInfo {
  /** host:port, no scheme */
  host: string;
  url: string;
  username: string;
  password: string;
}

export interface Cluster {
  dir: string;
  kubeconfig: string;
  server: string;
  caCert: string;
  adminToken: string;
  kubectl: string;
  binDir: string;
  versions: { kubernetes: string; etcd: string };
  natsUrl?: string;
  registry?: RegistryInfo;
  /** Stops the kube-apiserver only (for watch-failure tests); `startApiServer` brings it back on the same port. */
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  stop(): Promise<void>;
}

/** Builds (or finds in the cache) the control-plane binaries; returns their directory. */
export async function ensureBinaries(log: (m: string) => void = () => {}): Promise<string> {
  log("Checking control-plane binaries (a cold build takes several minutes)");
  const { stdout } = await run("bash", [join(repoRoot, "test/cluster/build-binaries.sh")], {
    maxBuffer: 16 * 1024 * 1024,
  });
  const lines = stdout.trim().split("\n");
  return lines[lines.length - 1] ?? "";
}

function httpsGet(
  url: string,
  ca: Buffer,
  token: string,
): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(
      url,
      { ca, headers: { authorization: `Bearer ${token}` }, timeout: 5000 },
      (r) => {
        let body = "";
        r.setEncoding("utf8");
        r.on("data", (c) => {
          body += c;
        });
        r.on("end", () => res({ status: r.statusCode ?? 0, body }));
      },
    );
    req.on("error", rej);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

function kubeconfigYaml(server: string, caPem: string, user: string, token: string): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "edgeshift-local",
        cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") },
      },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: "edgeshift-local", context: { cluster: "edgeshift-local", user } }],
    "current-context": "edgeshift-local",
  });
}

/**
 * Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler (and
 * optionally NATS and an OCI registry with basic auth) on free loopback ports
 * in a fresh temporary directory. `stop()` ends every process and removes the
 * directory; the processes also die with this one if it is killed.
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const log = opts.log ?? (() => {});
  const binDir = await ensureBinaries(log);
  const bin = (b: string) => join(binDir, b);
  const dir = await mkdtemp(join(tmpdir(), "edgeshift-cluster-"));
  const logDir = join(dir, "logs");
  await mkdir(logDir);
  const procs: Managed[] = [];
  const stopAll = async () => {
    for (const p of [...procs].reverse()) await stopProcess(p);
    procs.length = 0;
  };

  try {
    const pki = await makePki(dir);
    const caPem = await readFile(pki.caCert, "utf8");
    const ca = Buffer.from(caPem);

    // etcd
    const [etcdClient, etcdPeer] = [await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const etcd = startProcess(
      "etcd",
      bin("etcd"),
      [
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
        "--listen-metrics-urls=",
        // A throw-away test store: durability is not worth the fsync latency.
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { logDir },
    );
    procs.push(etcd);
    const etcdVersion = await waitUntil(
      "etcd",
      async () => {
        const r = await fetch(`${etcdUrl}/version`);
        if (!r.ok) return undefined;
        const h = await fetch(`${etcdUrl}/health`);
        if (!h.ok) return undefined;
        return ((await r.json()) as { etcdserver: string }).etcdserver;
      },
      { timeoutMs: 30_000, alive: [etcd] },
    );
    log(`Started etcd ${etcdVersion}`);

    // kube-apiserver, with static tokens for the admin and the two controllers.
    const tokens = {
      admin: randomBytes(24).toString("hex"),
      cm: randomBytes(24).toString("hex"),
      sched: randomBytes(24).toString("hex"),
    };
    await writeFile(
      join(dir, "tokens.csv"),
      [
        `${tokens.admin},edgeshift-admin,admin,"system:masters"`,
        `${tokens.cm},system:kube-controller-manager,kcm`,
        `${tokens.sched},system:kube-scheduler,ksched`,
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const apiPort = await freePort();
    const server = `https://127.0.0.1:${apiPort}`;
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--secure-port=${apiPort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      "--service-cluster-ip-range=10.0.0.0/24",
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--allow-privileged=true",
      "--endpoint-reconciler-type=none",
      "--v=1",
    ];
    let api = startProcess("kube-apiserver", bin("kube-apiserver"), apiArgs, { logDir });
    procs.push(api);
    const apiReady = (p: Managed) =>
      waitUntil(
        "kube-apiserver /readyz",
        async () => {
          const r = await httpsGet(`${server}/readyz`, ca, tokens.admin);
          return r.status === 200 ? true : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 300, alive: [p] },
      );
    await apiReady(api);
    const version = JSON.parse((await httpsGet(`${server}/version`, ca, tokens.admin)).body) as {
      gitVersion: string;
    };
    log(`Started kube-apiserver ${version.gitVersion} at ${server}`);

    const kubeconfig = join(dir, "admin.kubeconfig");
    await writeFile(kubeconfig, kubeconfigYaml(server, caPem, "edgeshift-admin", tokens.admin), {
      mode: 0o600,
    });
    const cmConfig = join(dir, "controller-manager.kubeconfig");
    await writeFile(cmConfig, kubeconfigYaml(server, caPem, "kcm", tokens.cm), { mode: 0o600 });
    const schedConfig = join(dir, "scheduler.kubeconfig");
    await writeFile(schedConfig, kubeconfigYaml(server, caPem, "ksched", tokens.sched), {
      mode: 0o600,
    });

    procs.push(
      startProcess(
        "kube-controller-manager",
        bin("kube-controller-manager"),
        [
          `--kubeconfig=${cmConfig}`,
          `--authentication-kubeconfig=${cmConfig}`,
          `--authorization-kubeconfig=${cmConfig}`,
          "--leader-elect=false",
          "--secure-port=0",
          `--root-ca-file=${pki.caCert}`,
          `--service-account-private-key-file=${pki.saKey}`,
          // Each controller acts as its own ServiceAccount with the bootstrap RBAC roles,
          // as in kubeadm clusters (the garbage collector needs its delete rights).
          "--use-service-account-credentials=true",
          "--v=1",
        ],
        { logDir },
      ),
    );
    procs.push(
      startProcess(
        "kube-scheduler",
        bin("kube-scheduler"),
        [
          `--kubeconfig=${schedConfig}`,
          `--authentication-kubeconfig=${schedConfig}`,
          `--authorization-kubeconfig=${schedConfig}`,
          "--leader-elect=false",
          "--secure-port=0",
          "--v=1",
        ],
        { logDir },
      ),
    );
    await waitUntil(
      "the default namespace and service account",
      async () => {
        const r = await httpsGet(
          `${server}/api/v1/namespaces/default/serviceaccounts/default`,
          ca,
          tokens.admin,
        );
        return r.status === 200 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 300, alive: procs },
    );
    log("Controller manager and scheduler are up; default service account exists");

    const kubectl = bin("kubectl");
    if (opts.installCrds) {
      await run(kubectl, [
        "--kubeconfig",
        kubeconfig,
        "apply",
        "--server-side",
        "-f",
        join(repoRoot, "crds"),
      ]);
      await run(kubectl, [
        "--kubeconfig",
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=edgeshift",
      ]);
      log("Installed the edgeshift CRDs");
    }

    let natsUrl: string | undefined;
    if (opts.nats) {
      const port = await freePort();
      const nats = startProcess(
        "nats-server",
        "nats-server",
        // The pid file puts this run's directory on the command line, so CI can tell
        // our servers from anyone else's.
        ["-a", "127.0.0.1", "-p", String(port), "-P", join(dir, "nats.pid")],
        {
          logDir,
        },
      );
      procs.push(nats);
      natsUrl = `nats://127.0.0.1:${port}`;
      await waitUntil(
        "nats-server",
        async () => ((await tailLog(nats, 50)).includes("Server is ready") ? true : undefined),
        { timeoutMs: 20_000, alive: [nats] },
      );
      log(`Started NATS at ${natsUrl}`);
    }

    let registry: RegistryInfo | undefined;
    if (opts.registry) {
      registry = await startRegistry(dir, logDir, procs);
      log(`Started OCI registry at ${registry.url} (basic auth)`);
    }

    const cluster: Cluster = {
      dir,
      kubeconfig,
      server,
      caCert: pki.caCert,
      adminToken: tokens.admin,
      kubectl,
      binDir,
      versions: { kubernetes: version.gitVersion, etcd: etcdVersion },
      natsUrl,
      registry,
      async stopApiServer() {
        await stopProcess(api);
      },
      async startApiServer() {
        const i = procs.indexOf(api);
        api = startProcess("kube-apiserver", bin("kube-apiserver"), apiArgs, { logDir });
        procs[i] = api;
        await apiReady(api);
      },
      async stop() {
        await stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
    return cluster;
  } catch (err) {
    const tails = await Promise.all(
      procs.map(async (p) => `--- ${p.name}\n${await tailLog(p, 15)}`),
    );
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${tails.join("\n")}`);
  }
}

async function startRegistry(dir: string, logDir: string, procs: Managed[]): Promise<RegistryInfo> {
  const port = await freePort();
  const username = "edgeshift";
  const password = randomBytes(18).toString("base64url");
  const htpasswd = join(dir, "registry.htpasswd");
  // Distribution only accepts bcrypt entries; -i reads the password from stdin
  // so it never appears on a command line.
  await new Promise<void>((res, rej) => {
    const child = execFile("htpasswd", ["-B", "-i", "-c", htpasswd, username], (err) =>
      err ? rej(err) : res(),
    );
    child.stdin?.end(password);
  });
  const config = join(dir, "registry.yml");
  await writeFile(
    config,
    stringify({
      version: 0.1,
      log: { level: "warn", accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: join(dir, "registry") }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString("hex") },
      auth: { htpasswd: { realm: "edgeshift-test", path: htpasswd } },
    }),
  );
  const reg = startProcess("registry", "docker-registry", ["serve", config], { logDir });
  procs.push(reg);
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    "registry",
    async () => {
      const r = await fetch(`${url}/v2/`);
      return r.status === 401 ? true : undefined;
    },
    { timeoutMs: 20_000, alive: [reg] },
  );
  return { host: `127.0.0.1:${port}`, url, username, password };
}
