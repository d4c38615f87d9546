import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { makePki, type Pki, signCert } from "./pki.ts";
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
  /** Run the control plane inside a network namespace (a cluster of real nodes); default: host loopback. */
  network?: ClusterNetwork;
  /** Static-token identities besides the admin and the controllers (kubelets, kube-proxy). */
  users?: { id: string; user: string; groups?: string[] }[];
  /** Extra kube-apiserver flags. */
  apiServerArgs?: string[];
  /** Directory to create the cluster in (default: a new one under the temp dir). */
  dir?: string;
}

/** Where the control plane runs when it is not on the host's loopback. */
export interface ClusterNetwork {
  /** Command prefix that runs a program inside the cluster's namespaces. */
  wrap: string[];
  /** The address the API server and registry listen on, reachable from nodes and pods. */
  address: string;
  /** A port on the host's 127.0.0.1 that reaches `host:port` inside the namespace. */
  reach(host: string, port: number): Promise<number>;
}

export interface RegistryInfo {
  /** host:port, no scheme, as nodes and pods reach it */
  host: string;
  url: string;
  /** The same registry as the harness on the host reaches it. */
  hostUrl: string;
  username: string;
  password: string;
  /** The registry's filesystem storage (its blobs under docker/registry/v2/blobs). */
  storage: string;
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
  pki: Pki;
  /** Bearer tokens of `ClusterOptions.users`, by id. */
  tokens: Record<string, string>;
  /** The API server's URL as nodes and pods reach it (equals `server` on loopback). */
  innerServer: string;
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

export function kubeconfigYaml(server: string, caPem: string, user: string, token: string): string {
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
  const net = opts.network;
  const wrap = (command: string, args: string[]) => wrapped(net, command, args);
  const reach = async (port: number, host = "127.0.0.1") =>
    net ? await net.reach(host, port) : port;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "edgeshift-cluster-")));
  const logDir = join(dir, "logs");
  await mkdir(logDir, { recursive: true });
  const procs: Managed[] = [];
  const stopAll = async () => {
    for (const p of [...procs].reverse()) await stopProcess(p);
    procs.length = 0;
  };

  try {
    const pki = await makePki(dir, net ? [`IP:${net.address}`] : []);
    const caPem = await readFile(pki.caCert, "utf8");
    const ca = Buffer.from(caPem);

    // etcd
    // Inside a namespace of its own the well-known ports are free.
    const [etcdClient, etcdPeer] = net ? [2379, 2380] : [await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const etcdHostUrl = `http://127.0.0.1:${await reach(etcdClient)}`;
    const etcd = startProcess(
      "etcd",
      ...wrap(bin("etcd"), [
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
      ]),
      { logDir },
    );
    procs.push(etcd);
    const etcdVersion = await waitUntil(
      "etcd",
      async () => {
        const r = await fetch(`${etcdHostUrl}/version`);
        if (!r.ok) return undefined;
        const h = await fetch(`${etcdHostUrl}/health`);
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
    const userTokens: Record<string, string> = {};
    const userLines = (opts.users ?? []).map((u) => {
      const t = randomBytes(24).toString("hex");
      userTokens[u.id] = t;
      return `${t},${u.user},${u.id}${u.groups?.length ? `,"${u.groups.join(",")}"` : ""}`;
    });
    await writeFile(
      join(dir, "tokens.csv"),
      [
        `${tokens.admin},edgeshift-admin,admin,"system:masters"`,
        `${tokens.cm},system:kube-controller-manager,kcm`,
        `${tokens.sched},system:kube-scheduler,ksched`,
        ...userLines,
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const apiPort = net ? 6443 : await freePort();
    const innerServer = net ? `https://${net.address}:${apiPort}` : `https://127.0.0.1:${apiPort}`;
    const server = `https://127.0.0.1:${await reach(apiPort, net?.address)}`;
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--secure-port=${apiPort}`,
      `--bind-address=${net ? "0.0.0.0" : "127.0.0.1"}`,
      `--advertise-address=${net?.address ?? "127.0.0.1"}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      // With nodes, kubelets act as system:node:<name> and may touch only their own objects.
      `--authorization-mode=${net ? "Node,RBAC" : "RBAC"}`,
      ...(net ? ["--enable-admission-plugins=NodeRestriction"] : []),
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--allow-privileged=true",
      // On loopback no pod needs the kubernetes Service; with nodes, its endpoint is the advertised address.
      ...(net ? [] : ["--endpoint-reconciler-type=none"]),
      ...(net ? await kubeletClientArgs(pki, dir) : []),
      "--v=1",
      ...(opts.apiServerArgs ?? []),
    ];
    let api = startProcess("kube-apiserver", ...wrap(bin("kube-apiserver"), apiArgs), { logDir });
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
    await writeFile(cmConfig, kubeconfigYaml(innerServer, caPem, "kcm", tokens.cm), {
      mode: 0o600,
    });
    const schedConfig = join(dir, "scheduler.kubeconfig");
    await writeFile(schedConfig, kubeconfigYaml(innerServer, caPem, "ksched", tokens.sched), {
      mode: 0o600,
    });

    procs.push(
      startProcess(
        "kube-controller-manager",
        ...wrap(bin("kube-controller-manager"), [
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
        ]),
        { logDir },
      ),
    );
    procs.push(
      startProcess(
        "kube-scheduler",
        ...wrap(bin("kube-scheduler"), [
          `--kubeconfig=${schedConfig}`,
          `--authentication-kubeconfig=${schedConfig}`,
          `--authorization-kubeconfig=${schedConfig}`,
          "--leader-elect=false",
          "--secure-port=0",
          "--v=1",
        ]),
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
      // Polled rather than `kubectl wait`, which fails outright when it reads a CRD
      // before the API server has set any condition on it.
      const crdCount = (await readdir(join(repoRoot, "crds"))).filter((f) =>
        f.endsWith(".yaml"),
      ).length;
      await waitUntil(
        "the edgeshift CRDs to be Established",
        async () => {
          const { stdout } = await run(kubectl, [
            "--kubeconfig",
            kubeconfig,
            "get",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=edgeshift",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Established")].status}{"\\n"}{end}',
          ]);
          const states = stdout.split("\n").filter(Boolean);
          return states.length === crdCount && states.every((x) => x === "True") ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      log("Installed the edgeshift CRDs");
    }

    let natsUrl: string | undefined;
    if (opts.nats) {
      const port = net ? 4222 : await freePort();
      const nats = startProcess(
        "nats-server",
        // The pid file puts this run's directory on the command line, so CI can tell
        // our servers from anyone else's.
        ...wrap("nats-server", [
          "-a",
          net?.address ?? "127.0.0.1",
          "-p",
          String(port),
          "-P",
          join(dir, "nats.pid"),
        ]),
        { logDir },
      );
      procs.push(nats);
      natsUrl = `nats://127.0.0.1:${await reach(port, net?.address)}`;
      await waitUntil(
        "nats-server",
        async () => ((await tailLog(nats, 50)).includes("Server is ready") ? true : undefined),
        { timeoutMs: 20_000, alive: [nats] },
      );
      log(`Started NATS at ${natsUrl}`);
    }

    let registry: RegistryInfo | undefined;
    if (opts.registry) {
      registry = await startRegistry(dir, logDir, procs, net);
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
      pki,
      tokens: userTokens,
      innerServer,
      natsUrl,
      registry,
      async stopApiServer() {
        await stopProcess(api);
      },
      async startApiServer() {
        const i = procs.indexOf(api);
        api = startProcess("kube-apiserver", ...wrap(bin("kube-apiserver"), apiArgs), { logDir });
        procs[i] = api;
        await apiReady(api);
      },
      async stop() {
        await stopAll();
        if (!opts.dir) await rm(dir, { recursive: true, force: true });
      },
    };
    return cluster;
  } catch (err) {
    const tails = await Promise.all(
      procs.map(async (p) => `--- ${p.name}\n${await tailLog(p, 15)}`),
    );
    await stopAll();
    if (!opts.dir) await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${tails.join("\n")}`);
  }
}

async function startRegistry(
  dir: string,
  logDir: string,
  procs: Managed[],
  net: ClusterNetwork | undefined,
): Promise<RegistryInfo> {
  const port = net ? 5001 : await freePort();
  const address = net?.address ?? "127.0.0.1";
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
      http: { addr: `${address}:${port}`, secret: randomBytes(16).toString("hex") },
      auth: { htpasswd: { realm: "edgeshift-test", path: htpasswd } },
    }),
  );
  const reg = startProcess("registry", ...wrapped(net, "docker-registry", ["serve", config]), {
    logDir,
  });
  procs.push(reg);
  const url = `http://${address}:${port}`;
  const hostUrl = net ? `http://127.0.0.1:${await net.reach(address, port)}` : url;
  await waitUntil(
    "registry",
    async () => {
      const r = await fetch(`${hostUrl}/v2/`);
      return r.status === 401 ? true : undefined;
    },
    { timeoutMs: 20_000, alive: [reg] },
  );
  return {
    host: `${address}:${port}`,
    url,
    hostUrl,
    username,
    password,
    storage: join(dir, "registry"),
  };
}

function wrapped(
  net: ClusterNetwork | undefined,
  command: string,
  args: string[],
): [string, string[]] {
  return net ? [net.wrap[0] ?? "", [...net.wrap.slice(1), command, ...args]] : [command, args];
}

/** The API server's side of `kubectl logs/exec`: a client certificate, and the CA that signs kubelets' serving certificates. */
async function kubeletClientArgs(pki: Pki, dir: string): Promise<string[]> {
  const c = await signCert(
    pki,
    dir,
    "apiserver-kubelet-client",
    "/O=system:masters/CN=kube-apiserver-kubelet-client",
    "clientAuth",
  );
  return [
    `--kubelet-client-certificate=${c.cert}`,
    `--kubelet-client-key=${c.key}`,
    `--kubelet-certificate-authority=${pki.caCert}`,
    // Node names do not resolve here; their InternalIP does.
    "--kubelet-preferred-address-types=InternalIP",
  ];
}
