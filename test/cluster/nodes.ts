// A local cluster of real nodes, after kind's model with namespaces instead of
// containers: the control plane, two registries and N nodes, each node a real
// kubelet + containerd (+ runc + CRIU) and a kube-proxy in a network and mount
// namespace of its own, so its /var/lib/kubelet, /var/lib/containerd and
// /run/containerd are its own directories, exactly as on a real node.
//
//   host ── (unix-socket relays) ── cluster namespace: bridge es0 10.99.0.100
//                                    etcd, API server :6443, scheduler, controller manager
//                                    image registry :5000, checkpoint registry :5001
//                                    ├─ veth ── node 1 namespace 10.99.0.1, pods 10.88.1.0/24
//                                    └─ veth ── node 2 namespace 10.99.0.2, pods 10.88.2.0/24
//
// Nothing is routed off the machine: the cluster namespace's only uplinks are
// the nodes' veths. The host reaches the API server and the registries through
// relays (forward.ts). Every node's link can be shaped (tc tbf) and cut.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { CHECKPOINT_RESTORE_ANNOTATION } from "../../operator/edgenode/preflight.ts";
import { type Cluster, kubeconfigYaml, startCluster } from "./cluster.ts";
import { type HostRelay, relayTcpToUnix } from "./forward.ts";
import { ensureImages, pushImages } from "./images.ts";
import { ensureNodeBinaries, type NodeBinaries } from "./node-binaries.ts";
import {
  cniConfig,
  containerdConfig,
  kubeletConfig,
  kubeProxyConfig,
  type NodeSettings,
  registryHosts,
} from "./node-config.ts";
import { signCert } from "./pki.ts";
import { type Managed, startProcess, stopProcess, tailLog, waitUntil } from "./process.ts";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

export const CLUSTER_ADDRESS = "10.99.0.100";
export const IMAGE_REGISTRY = `${CLUSTER_ADDRESS}:5000`;
export const CLUSTER_DNS = "10.0.0.10";
const SANDBOX_IMAGE = "registry.k8s.io/pause:3.10";
const MIRRORED_HOSTS = ["docker.io", "ghcr.io", "registry.k8s.io"];

export interface RealNodeSpec {
  name: string;
  /** Labels set on the Node object once it registered (as `kubectl label` would). */
  labels?: Record<string, string>;
  /** containerd's restore of checkpoint images (default true). */
  restoreViaCreate?: boolean;
  /** The node's containerd: 2.3 (v2.3.7, default) or 1.7 (v1.7.35, cannot checkpoint). */
  containerd?: "2.3" | "1.7";
  /** Annotations set on the Node object once it registered (as `kubectl annotate` would). */
  annotations?: Record<string, string>;
  /** Taints set on the Node object once it registered, e.g. `key=value:NoSchedule`. */
  taints?: string[];
}

export interface NodeClusterOptions {
  nodes?: RealNodeSpec[];
  installCrds?: boolean;
  log?: (m: string) => void;
}

export interface RealNode {
  name: string;
  ip: string;
  podCidr: string;
  /** Host path of the node's directory; `<dir>/kubelet` is its /var/lib/kubelet. */
  dir: string;
  /** Host path of what the node sees as /var/lib/kubelet/checkpoints. */
  checkpointDir: string;
  /** Runs a command inside the node's namespaces. */
  exec(args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Limits the node's link both ways (tc tbf), e.g. 100 Mbit/s. */
  shape(mbit: number): Promise<void>;
  unshape(): Promise<void>;
  /** Takes the node's link down (a partition) and back up. */
  cut(): Promise<void>;
  heal(): Promise<void>;
}

export interface NodeCluster {
  dir: string;
  control: Cluster;
  kubeconfig: string;
  kubectl: string;
  nodes: (RealNode & { address: NodeAddress })[];
  /** Plain-HTTP registry that mirrors docker.io, ghcr.io and registry.k8s.io for the nodes. */
  imageRegistry: string;
  versions: { kubernetes: string; etcd: string; containerd: string };
  binaries: NodeBinaries;
  /** Runs a command inside the cluster namespace (where the control plane runs). */
  inCluster(args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** A port on the host's 127.0.0.1 that reaches `host:port` on the cluster network. */
  reach(host: string, port: number): Promise<number>;
  /** Pids of the processes holding the cluster's and the nodes' namespaces. */
  holders: number[];
  /** The nodes' cgroup roots, e.g. /edgeshift-<pid>-<run>-edge-1. */
  cgroupRoots: string[];
  stop(): Promise<void>;
}

const DEFAULT_NODES: RealNodeSpec[] = [
  { name: "edge-1", labels: { "node-role.edgeshift.dev/edge": "" } },
  { name: "cloud-1", labels: { "node-role.edgeshift.dev/cloud": "" } },
];

interface NodeState {
  spec: RealNodeSpec;
  settings: NodeSettings;
  holder: Managed;
  link: string;
  procs: Managed[];
}

/** The v1 hierarchies a cgroupfs kubelet insists its cgroup root exists in. */
async function cgroupHierarchies(): Promise<string[]> {
  const all = await readdir("/sys/fs/cgroup");
  return all.filter((h) => h !== "unified").map((h) => join("/sys/fs/cgroup", h));
}

async function cgroupDirsDeepestFirst(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: string[] = [];
    try {
      entries = (await readdir(d, { withFileTypes: true }))
        .filter((e) => e.isDirectory())
        .map((e) => join(d, e.name));
    } catch {
      return;
    }
    for (const e of entries) await walk(e);
    out.push(d);
  };
  await walk(root);
  return out;
}

/** Kills every process in a cgroup subtree (thawing frozen ones first) and removes it. */
async function removeCgroupTree(name: string): Promise<string[]> {
  const left: string[] = [];
  // The kubelet also makes its cgroups in the (controller-less) v2 hierarchy.
  const hierarchies = [...(await cgroupHierarchies()), "/sys/fs/cgroup/unified"];
  const freezer = join("/sys/fs/cgroup/freezer", name);
  for (const d of await cgroupDirsDeepestFirst(freezer)) {
    await writeFile(join(d, "freezer.state"), "THAWED").catch(() => {});
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    let busy = false;
    for (const h of hierarchies) {
      for (const d of await cgroupDirsDeepestFirst(join(h, name))) {
        const procs = (await readFile(join(d, "cgroup.procs"), "utf8").catch(() => ""))
          .split("\n")
          .filter(Boolean);
        for (const pid of procs) {
          try {
            process.kill(Number(pid), "SIGKILL");
          } catch {}
        }
        if (procs.length) busy = true;
        await rmdir(d).catch(() => {
          busy = true;
        });
      }
    }
    if (!busy) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const h of hierarchies) if (existsSync(join(h, name))) left.push(join(h, name));
  return left;
}

/** While this file of a node's directory exists, the node's CRIU calls wait (install-criu.sh). */
export function criuHoldFile(nodeDir: string): string {
  return join(nodeDir, "criu-hold");
}

/** What identifies a running node, enough to act on it from another process. */
export interface NodeAddress {
  name: string;
  ip: string;
  podCidr: string;
  dir: string;
  /** Pid holding the node's namespaces. */
  pid: number;
  /** Pid holding the cluster namespace, where the node's veth peer is. */
  clusterPid: number;
  /** The node's veth in the cluster namespace. */
  link: string;
}

/** A node's exec, link shaping and partition, from its address (any process of the harness's user). */
export function nodeHandle(a: NodeAddress): RealNode & { address: NodeAddress } {
  const runIn = (pid: number, args: string[]) =>
    run("nsenter", ["-t", String(pid), "-m", "-n", "--", ...args], { maxBuffer: 64 * 1024 * 1024 });
  const nodeExec = (args: string[]) => runIn(a.pid, args);
  const inCluster = (args: string[]) => runIn(a.clusterPid, args);
  // tbf: the bandwidth limit this kernel supports (no netem here).
  const tbf = (dev: string, mbit: number) =>
    ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", `${mbit}mbit`].concat([
      "burst",
      "64kb",
      "latency",
      "50ms",
    ]);
  return {
    address: a,
    name: a.name,
    ip: a.ip,
    podCidr: a.podCidr,
    dir: a.dir,
    checkpointDir: join(a.dir, "kubelet", "checkpoints"),
    exec: nodeExec,
    async shape(mbit) {
      await inCluster(tbf(a.link, mbit));
      await nodeExec(tbf("eth0", mbit));
    },
    async unshape() {
      await inCluster(["tc", "qdisc", "del", "dev", a.link, "root"]).catch(() => {});
      await nodeExec(["tc", "qdisc", "del", "dev", "eth0", "root"]).catch(() => {});
    },
    async cut() {
      await inCluster(["ip", "link", "set", a.link, "down"]);
    },
    async heal() {
      await inCluster(["ip", "link", "set", a.link, "up"]);
    },
  };
}

const CGROUP_PREFIX = "edgeshift-";

/**
 * Moves a process (and so everything it forks later: containerd's shims) into
 * `<cgroup root>/system` of every hierarchy, so tearing down the node's cgroup
 * tree reaches every process of the node.
 */
async function adopt(pid: number | undefined, cgroupRoot: string): Promise<void> {
  if (!pid) return;
  for (const h of [...(await cgroupHierarchies()), "/sys/fs/cgroup/unified"]) {
    const d = join(h, cgroupRoot, "system");
    await mkdir(d, { recursive: true });
    if (h.endsWith("/cpuset")) {
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        await writeFile(join(d, f), await readFile(join(h, cgroupRoot, f), "utf8"));
      }
    }
    await writeFile(join(d, "cgroup.procs"), String(pid));
  }
}

/**
 * Removes what earlier runs left when their harness was killed (SIGKILL, a
 * crashed test runner): cgroup roots are named after the harness's pid, and a
 * root whose harness is gone is torn down with every process in it.
 */
async function reapDeadRuns(log: (m: string) => void): Promise<void> {
  const roots = await readdir("/sys/fs/cgroup/pids").catch(() => [] as string[]);
  for (const r of roots) {
    const m = new RegExp(`^${CGROUP_PREFIX}(\\d+)-[0-9a-f]+-`).exec(r);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const left = await removeCgroupTree(r);
    log(
      `Removed node ${r} left by a run that is gone${left.length ? ` (left: ${left.join(", ")})` : ""}`,
    );
  }
}

/** Every process whose namespace of `kind` is the same as `pid`'s, except `pid` itself. */
async function processesInNamespaceOf(pid: number, kind: "mnt" | "net"): Promise<number[]> {
  let target: number;
  try {
    target = (await stat(`/proc/${pid}/ns/${kind}`)).ino;
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const e of await readdir("/proc")) {
    const p = Number(e);
    if (!Number.isInteger(p) || p === pid || p === process.pid) continue;
    try {
      if ((await stat(`/proc/${p}/ns/${kind}`)).ino === target) out.push(p);
    } catch {}
  }
  return out;
}

async function killNamespaceMembers(holder: Managed, kind: "mnt" | "net"): Promise<void> {
  const pid = holder.child.pid;
  if (!pid) return;
  for (const p of await processesInNamespaceOf(pid, kind)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {}
  }
}

/** Starts a namespace holder (`sleep infinity` after `setup`), resolving once `setup` has run. */
async function startHolder(
  name: string,
  wrap: string[],
  unshareArgs: string[],
  setup: string[],
  dir: string,
  logDir: string,
): Promise<Managed> {
  const ready = join(dir, `${name}.ready`);
  const script = ["set -e", ...setup, `touch ${ready}`, "exec sleep infinity"].join("\n");
  const [cmd, ...rest] = [...wrap, "unshare", ...unshareArgs, "--", "sh", "-c", script];
  const holder = startProcess(name, cmd ?? "", rest, {
    logDir,
    // util-linux would otherwise create /run/mount on the host before /run is covered.
    env: { ...process.env, LIBMOUNT_UTAB: join(dir, `${name}.utab`) },
  });
  await waitUntil(`namespace ${name}`, async () => (existsSync(ready) ? true : undefined), {
    timeoutMs: 15_000,
    intervalMs: 50,
    alive: [holder],
  });
  return holder;
}

export async function startNodeCluster(opts: NodeClusterOptions = {}): Promise<NodeCluster> {
  const log = opts.log ?? (() => {});
  const specs = opts.nodes ?? DEFAULT_NODES;
  const binaries = await ensureNodeBinaries(log, {
    withContainerd17: specs.some((s) => s.containerd === "1.7"),
  });
  log("Building (or finding) the node images");
  const images = await ensureImages({ pause: binaries.pause, coredns: binaries.coredns, log });

  const dir = await mkdtemp(join(tmpdir(), "edgeshift-nodes-"));
  const logDir = join(dir, "logs");
  const nsDir = join(dir, "ns");
  for (const d of ["run", "varlib", "varlog"]) await mkdir(join(nsDir, d), { recursive: true });
  await mkdir(logDir, { recursive: true });
  const runId = randomBytes(4).toString("hex");
  const procs: Managed[] = [];
  const relays: HostRelay[] = [];
  const nodes: NodeState[] = [];
  let control: Cluster | undefined;
  let clusterHolder: Managed | undefined;
  const cgroupRoot = (n: string) => `/${CGROUP_PREFIX}${process.pid}-${runId}-${n}`;
  await reapDeadRuns(log);

  const stop = async () => {
    // The kubelets go first, so none restarts a container while the rest goes.
    for (const n of nodes) {
      const kubelet = n.procs.find((p) => p.name.endsWith("-kubelet"));
      if (kubelet) await stopProcess(kubelet, 10_000);
    }
    // Every process of a node is in its cgroup tree: pods, containerd and its
    // shims, kube-proxy, the namespace holder.
    for (const n of nodes) {
      const left = await removeCgroupTree(n.settings.cgroupRoot.slice(1));
      if (left.length) log(`Could not remove cgroups: ${left.join(", ")}`);
      await killNamespaceMembers(n.holder, "mnt");
      for (const p of n.procs) await stopProcess(p);
      await stopProcess(n.holder);
    }
    await control?.stop();
    for (const r of relays) await r.close();
    for (const p of [...procs].reverse()) await stopProcess(p);
    if (clusterHolder) {
      await killNamespaceMembers(clusterHolder, "net");
      await stopProcess(clusterHolder);
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    clusterHolder = await startHolder(
      "cluster-ns",
      [],
      ["--mount", "--net", "--propagation", "private"],
      [
        // containerd's, CNI's and the kubelet's hard-coded paths stay off the host.
        `mount --bind ${nsDir}/run /run`,
        `mount --bind ${nsDir}/varlib /var/lib`,
        `mount --bind ${nsDir}/varlog /var/log`,
        "mount --make-rshared /",
        "ip link set lo up",
        "ip link add es0 type bridge",
        "ip link set es0 up",
        `ip addr add ${CLUSTER_ADDRESS}/24 dev es0`,
        "sysctl -qw net.ipv4.ip_forward=1",
      ],
      dir,
      logDir,
    );
    const clusterPid = String(clusterHolder.child.pid);
    const inClusterNs = ["nsenter", "-t", clusterPid, "-m", "-n", "--"];
    const inCluster = (args: string[]) =>
      run(inClusterNs[0] ?? "", [...inClusterNs.slice(1), ...args], {
        maxBuffer: 16 * 1024 * 1024,
      });

    let relayCount = 0;
    const reach = async (host: string, port: number): Promise<number> => {
      const sock = join(dir, `relay-${relayCount++}.sock`);
      const p = startProcess(
        `relay-${host}-${port}`,
        "nsenter",
        [
          "-t",
          clusterPid,
          "-n",
          "--",
          process.execPath,
          join(here, "forward.ts"),
          sock,
          host,
          String(port),
        ],
        { logDir },
      );
      procs.push(p);
      await waitUntil(
        `relay to ${host}:${port}`,
        async () => (existsSync(sock) ? true : undefined),
        {
          timeoutMs: 10_000,
          intervalMs: 50,
          alive: [p],
        },
      );
      const r = await relayTcpToUnix(sock);
      relays.push(r);
      return r.port;
    };

    // The image registry: no auth, what an air-gapped cluster's mirror would be.
    const imgConfig = join(dir, "image-registry.yml");
    await writeFile(
      imgConfig,
      stringify({
        version: 0.1,
        log: { level: "warn", accesslog: { disabled: true } },
        storage: { filesystem: { rootdirectory: join(dir, "image-registry") } },
        http: { addr: `0.0.0.0:5000`, secret: randomBytes(16).toString("hex") },
      }),
    );
    const imgReg = startProcess(
      "image-registry",
      inClusterNs[0] ?? "",
      [...inClusterNs.slice(1), "docker-registry", "serve", imgConfig],
      { logDir },
    );
    procs.push(imgReg);

    const users = [
      ...specs.map((s) => ({
        id: `kubelet-${s.name}`,
        user: `system:node:${s.name}`,
        groups: ["system:nodes"],
      })),
      { id: "kube-proxy", user: "system:kube-proxy" },
    ];
    log("Starting the control plane inside the cluster namespace");
    control = await startCluster({
      installCrds: opts.installCrds ?? true,
      registry: true,
      network: { wrap: inClusterNs, address: CLUSTER_ADDRESS, reach },
      users,
      dir: join(dir, "control-plane"),
      log: (m) => log(`  ${m}`),
    });
    const cp = control;
    const caPem = await readFile(cp.pki.caCert, "utf8");

    const imgHost = await reach("127.0.0.1", 5000);
    await waitUntil(
      "image registry",
      async () => ((await fetch(`http://127.0.0.1:${imgHost}/v2/`)).ok ? true : undefined),
      { timeoutMs: 20_000, alive: [imgReg] },
    );
    log("Pushing the node images into the cluster's registry");
    await pushImages(images, "127.0.0.1:5000", { wrap: ["nsenter", "-t", clusterPid, "-n", "--"] });

    const hierarchies = await cgroupHierarchies();
    const registryHost = cp.registry?.host ?? "";
    for (const [i, spec] of specs.entries()) {
      const idx = i + 1;
      const ndir = join(dir, "nodes", spec.name);
      for (const d of [
        "kubelet",
        "containerd",
        "run",
        "cni-state",
        "log",
        "cni",
        "certs.d",
        "tmp",
        "pki",
      ]) {
        await mkdir(join(ndir, d), { recursive: true });
      }
      const serving = await signCert(
        cp.pki,
        join(ndir, "pki"),
        "kubelet",
        `/O=system:nodes/CN=system:node:${spec.name}`,
        "serverAuth",
        [`IP:10.99.0.${idx}`, `DNS:${spec.name}`],
      );
      const settings: NodeSettings = {
        name: spec.name,
        ip: `10.99.0.${idx}`,
        podCidr: `10.88.${idx}.0/24`,
        clusterCidr: "10.88.0.0/16",
        cgroupRoot: cgroupRoot(spec.name),
        dir: ndir,
        mirrors: [{ registry: IMAGE_REGISTRY, hosts: MIRRORED_HOSTS }],
        insecureRegistries: [IMAGE_REGISTRY, registryHost],
        sandboxImage: SANDBOX_IMAGE,
        runc: binaries.runc,
        cniDir: binaries.cniDir,
        clusterDns: CLUSTER_DNS,
        caFile: cp.pki.caCert,
        kubeletCert: serving.cert,
        kubeletKey: serving.key,
        restoreViaCreate: spec.restoreViaCreate ?? true,
        containerd: spec.containerd ?? "2.3",
      };
      // The kubelet wants its cgroup root in every v1 hierarchy, cpuset filled in.
      for (const h of hierarchies) await mkdir(join(h, settings.cgroupRoot), { recursive: true });
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        const v = await readFile(join("/sys/fs/cgroup/cpuset", f), "utf8");
        await writeFile(join("/sys/fs/cgroup/cpuset", settings.cgroupRoot, f), v);
      }
      await writeFile(join(ndir, "containerd.toml"), containerdConfig(settings));
      for (const [rel, text] of Object.entries(registryHosts(settings))) {
        await mkdir(dirname(join(ndir, "certs.d", rel)), { recursive: true });
        await writeFile(join(ndir, "certs.d", rel), text);
      }
      await writeFile(join(ndir, "cni", "10-edgeshift.conflist"), cniConfig(settings));
      await writeFile(join(ndir, "kubelet.yaml"), kubeletConfig(settings));
      await writeFile(join(ndir, "resolv.conf"), `nameserver ${CLUSTER_DNS}\n`);
      const kubeletKc = join(ndir, "kubelet.kubeconfig");
      await writeFile(
        kubeletKc,
        kubeconfigYaml(
          cp.innerServer,
          caPem,
          `system:node:${spec.name}`,
          cp.tokens[`kubelet-${spec.name}`] ?? "",
        ),
        { mode: 0o600 },
      );
      const proxyKc = join(ndir, "kube-proxy.kubeconfig");
      await writeFile(
        proxyKc,
        kubeconfigYaml(cp.innerServer, caPem, "system:kube-proxy", cp.tokens["kube-proxy"] ?? ""),
        { mode: 0o600 },
      );
      await writeFile(join(ndir, "kube-proxy.yaml"), kubeProxyConfig(settings, proxyKc));

      const holder = await startHolder(
        `${spec.name}-ns`,
        inClusterNs,
        ["--mount", "--net", "--propagation", "slave"],
        [
          "mkdir -p /var/lib/kubelet /var/lib/containerd /var/lib/cni /run/containerd",
          `mount --bind ${ndir}/kubelet /var/lib/kubelet`,
          `mount --bind ${ndir}/containerd /var/lib/containerd`,
          `mount --bind ${ndir}/cni-state /var/lib/cni`,
          `mount --bind ${ndir}/run /run/containerd`,
          `mount --bind ${ndir}/log /var/log`,
          "ip link set lo up",
          "sysctl -qw net.ipv4.ip_forward=1",
        ],
        ndir,
        logDir,
      );
      await adopt(holder.child.pid, settings.cgroupRoot);
      const link = `es-${spec.name}`.slice(0, 15);
      const nodePid = String(holder.child.pid);
      const inNode = ["nsenter", "-t", nodePid, "-m", "-n", "--"];
      await inCluster([
        "ip",
        "link",
        "add",
        link,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        nodePid,
      ]);
      await inCluster(["ip", "link", "set", link, "master", "es0", "up"]);
      await inCluster(["ip", "route", "add", settings.podCidr, "via", settings.ip]);
      const nodeRun = (args: string[]) =>
        run(inNode[0] ?? "", [...inNode.slice(1), ...args], { maxBuffer: 16 * 1024 * 1024 });
      await nodeRun(["ip", "addr", "add", `${settings.ip}/24`, "dev", "eth0"]);
      await nodeRun(["ip", "link", "set", "eth0", "up"]);
      await nodeRun(["ip", "route", "add", "default", "via", CLUSTER_ADDRESS]);
      const state: NodeState = { spec, settings, holder, link, procs: [] };
      nodes.push(state);

      const containerdBin =
        spec.containerd === "1.7" ? (binaries.containerd17 ?? "") : binaries.containerd;
      // containerd finds its shim on the PATH: its own version's first.
      const path = [
        dirname(containerdBin),
        binaries.criuDir,
        dirname(binaries.runc),
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
      ].join(":");
      // The CRIU wrapper waits while this file exists (install-criu.sh): a test's hold on a dump.
      const env = [
        "env",
        `PATH=${path}`,
        `TMPDIR=${join(ndir, "tmp")}`,
        `EDGESHIFT_TEST_CRIU_HOLD=${criuHoldFile(ndir)}`,
      ];
      const start = async (name: string, args: string[]) => {
        const p = startProcess(
          `${spec.name}-${name}`,
          inNode[0] ?? "",
          [...inNode.slice(1), ...env, ...args],
          { logDir },
        );
        state.procs.push(p);
        // setpriv, nsenter and env exec one another: the pid is the program's.
        await adopt(p.child.pid, settings.cgroupRoot);
        return p;
      };
      const ctrd = await start("containerd", [
        containerdBin,
        "--config",
        join(ndir, "containerd.toml"),
      ]);
      await waitUntil(
        `containerd of ${spec.name}`,
        async () => (existsSync(join(ndir, "run", "containerd.sock")) ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 100, alive: [ctrd] },
      );
      await start("kubelet", [
        binaries.kubelet,
        `--config=${join(ndir, "kubelet.yaml")}`,
        `--kubeconfig=${kubeletKc}`,
        `--hostname-override=${spec.name}`,
        `--node-ip=${settings.ip}`,
        "--root-dir=/var/lib/kubelet",
        // Else the kubelet writes its certificates to /var/lib/kubelet/pki whatever --root-dir says.
        "--cert-dir=/var/lib/kubelet/pki",
        "--v=1",
      ]);
      await start("kube-proxy", [
        binaries.kubeProxy,
        `--config=${join(ndir, "kube-proxy.yaml")}`,
        "--v=1",
      ]);
    }

    const kubectl = (args: string[]) =>
      run(cp.kubectl, ["--kubeconfig", cp.kubeconfig, ...args], { maxBuffer: 16 * 1024 * 1024 });
    for (const n of nodes) {
      await waitUntil(
        `node ${n.spec.name} Ready`,
        async () => {
          const { stdout } = await kubectl([
            "get",
            "node",
            n.spec.name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
          ]).catch(() => ({ stdout: "" }));
          return stdout === "True" ? true : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250, alive: n.procs },
      );
      const labels = Object.entries(n.spec.labels ?? {}).map(([k, v]) => `${k}=${v}`);
      if (labels.length) await kubectl(["label", "node", n.spec.name, "--overwrite", ...labels]);
      // As the admin who turned on containerd's restore via CreateContainer declares it.
      const restores = n.settings.restoreViaCreate && n.settings.containerd !== "1.7";
      const notes = Object.entries({
        ...(restores ? { [CHECKPOINT_RESTORE_ANNOTATION]: "enabled" } : {}),
        ...n.spec.annotations,
      }).map(([k, v]) => `${k}=${v}`);
      if (notes.length) await kubectl(["annotate", "node", n.spec.name, "--overwrite", ...notes]);
      for (const t of n.spec.taints ?? []) {
        await kubectl(["taint", "node", n.spec.name, "--overwrite", t]);
      }
      log(`Node ${n.spec.name} (${n.settings.ip}) is Ready`);
    }
    await kubectl(["apply", "--server-side", "-f", join(here, "coredns.yaml")]);
    await kubectl(["-n", "kube-system", "rollout", "status", "deploy/coredns", "--timeout=120s"]);
    log("CoreDNS is available");

    const { stdout: ctrdVersion } = await run(binaries.containerd, ["--version"]);
    const realNodes = nodes.map((n) =>
      nodeHandle({
        name: n.spec.name,
        ip: n.settings.ip,
        podCidr: n.settings.podCidr,
        dir: n.settings.dir,
        pid: n.holder.child.pid ?? 0,
        clusterPid: Number(clusterPid),
        link: n.link,
      }),
    );
    return {
      dir,
      control: cp,
      kubeconfig: cp.kubeconfig,
      kubectl: cp.kubectl,
      nodes: realNodes,
      imageRegistry: IMAGE_REGISTRY,
      versions: {
        ...cp.versions,
        containerd: ctrdVersion.trim().split(/\s+/)[2] ?? "unknown",
      },
      binaries,
      inCluster,
      reach,
      holders: [clusterHolder, ...nodes.map((n) => n.holder)].map((h) => h.child.pid ?? 0),
      cgroupRoots: nodes.map((n) => n.settings.cgroupRoot),
      stop,
    };
  } catch (err) {
    const tails = await Promise.all(
      [...procs, ...nodes.flatMap((n) => n.procs)].map(
        async (p) => `--- ${p.name}\n${await tailLog(p, 20)}`,
      ),
    );
    await stop().catch(() => {});
    throw new Error(`${(err as Error).message}\n${tails.join("\n")}`);
  }
}
