// Configuration files of one real node (containerd, kubelet, kube-proxy, CNI),
// as pure functions of the node's settings. Each setting that is not a default
// is here because this machine needs it; ../shared/design/FACTS.md ("Real nodes
// on this machine") records the error met without it.
import { stringify } from "yaml";

export interface NodeSettings {
  name: string;
  /** The node's address on the cluster network. */
  ip: string;
  /** This node's pod subnet, e.g. 10.88.1.0/24. */
  podCidr: string;
  /** Every node's pod subnets, for kube-proxy's idea of "inside the cluster". */
  clusterCidr: string;
  /** Cgroup (every v1 hierarchy) under which the kubelet puts its pods. */
  cgroupRoot: string;
  /** Host path of the node's directory. */
  dir: string;
  /** Plain-HTTP registries the node pulls from, and the hosts they mirror. */
  mirrors: { registry: string; hosts: string[] }[];
  /** Registries pulled from directly over plain HTTP (the checkpoint registry). */
  insecureRegistries: string[];
  sandboxImage: string;
  runc: string;
  cniDir: string;
  clusterDns: string;
  caFile: string;
  kubeletCert: string;
  kubeletKey: string;
  /** containerd's restore of checkpoint images through CreateContainer (2.2/2.3 only). */
  restoreViaCreate: boolean;
  /** Which containerd the node runs: 2.3 (config version 3, the default) or 1.7 (version 2). */
  containerd?: "2.3" | "1.7";
}

/**
 * containerd 2.x, config version 3. Paths are the standard ones: inside the
 * node's own mount namespace they are the node's own directories.
 */
export function containerdConfig(n: NodeSettings): string {
  if (n.containerd === "1.7") return containerd17Config(n);
  const cri = "io.containerd.cri.v1.runtime";
  return `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
# Two containerds on one machine would share NRI's fixed socket.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[debug]
  address = "/run/containerd/debug.sock"
  level = "info"
[metrics]
  address = ""

[plugins."${cri}"]
  enable_criu = true
  # Deprecated and removed in containerd 2.4; without it: "checkpoint restore via
  # CreateContainer is disabled by configuration".
  enable_experimental_restore_via_create = ${n.restoreViaCreate}
  # No CAP_SYS_RESOURCE here: the sandbox's oom_score_adj -998 is refused
  # ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."${cri}".containerd]
    default_runtime_name = "runc"
    [plugins."${cri}".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."${cri}".containerd.runtimes.runc.options]
        BinaryName = "${n.runc}"
        SystemdCgroup = false
  [plugins."${cri}".cni]
    bin_dirs = ["${n.cniDir}"]
    conf_dir = "${n.dir}/cni"

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "${n.dir}/certs.d"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${n.sandboxImage}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

/**
 * containerd 1.7, config version 2: one CRI plugin (`io.containerd.grpc.v1.cri`)
 * holds runtime, image and registry settings, under version 2's keys. The same
 * settings as containerd 2.x's for the same reasons, without CRIU's: 1.7's CRI
 * has no CheckpointContainer (it answers "not implemented").
 */
export function containerd17Config(n: NodeSettings): string {
  const cri = "io.containerd.grpc.v1.cri";
  return `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
# Two containerds on one machine would share NRI's fixed socket.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[debug]
  address = "/run/containerd/debug.sock"
  level = "info"
[metrics]
  address = ""

[plugins."${cri}"]
  sandbox_image = "${n.sandboxImage}"
  # No CAP_SYS_RESOURCE here (see containerdConfig).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."${cri}".containerd]
    default_runtime_name = "runc"
    [plugins."${cri}".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."${cri}".containerd.runtimes.runc.options]
        BinaryName = "${n.runc}"
        SystemdCgroup = false
  [plugins."${cri}".cni]
    bin_dir = "${n.cniDir}"
    conf_dir = "${n.dir}/cni"
  [plugins."${cri}".registry]
    config_path = "${n.dir}/certs.d"
`;
}

/** `certs.d/<host>/hosts.toml` files: relative path -> content. */
export function registryHosts(n: NodeSettings): Record<string, string> {
  const files: Record<string, string> = {};
  for (const m of n.mirrors) {
    for (const host of m.hosts) {
      const upstream = host === "docker.io" ? "https://registry-1.docker.io" : `https://${host}`;
      files[`${host}/hosts.toml`] = `server = "${upstream}"

[host."http://${m.registry}"]
  capabilities = ["pull", "resolve"]
`;
    }
  }
  for (const r of n.insecureRegistries) {
    files[`${r}/hosts.toml`] = `server = "http://${r}"

[host."http://${r}"]
  capabilities = ["pull", "resolve"]
`;
  }
  return files;
}

export function cniConfig(n: NodeSettings): string {
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "edgeshift",
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            dataDir: "/var/lib/cni/networks",
            ranges: [[{ subnet: n.podCidr }]],
            routes: [{ dst: "0.0.0.0/0" }],
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

export function kubeletConfig(n: NodeSettings): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: n.ip,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: 10248,
    // Signed by the cluster CA, so the API server and the edge agent can verify it.
    tlsCertFile: n.kubeletCert,
    tlsPrivateKeyFile: n.kubeletKey,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true, cacheTTL: "10s" },
      x509: { clientCAFile: n.caFile },
    },
    authorization: {
      mode: "Webhook",
      webhook: { cacheAuthorizedTTL: "10s", cacheUnauthorizedTTL: "5s" },
    },
    // The machine's cgroups are v1 and PID 1 is not systemd.
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    cgroupRoot: n.cgroupRoot,
    cgroupsPerQOS: true,
    failSwapOn: false,
    containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
    imageServiceEndpoint: "unix:///run/containerd/containerd.sock",
    clusterDomain: "cluster.local",
    clusterDNS: [n.clusterDns],
    resolvConf: `${n.dir}/resolv.conf`,
    serializeImagePulls: false,
    maxPods: 40,
    // The machine's disk is shared with everything else: evict only when it is nearly full.
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "1%",
      "imagefs.available": "1%",
    },
    imageGCHighThresholdPercent: 99,
    imageGCLowThresholdPercent: 98,
    featureGates: { ContainerCheckpoint: true },
  });
}

export function kubeProxyConfig(n: NodeSettings, kubeconfig: string): string {
  return stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    mode: "iptables",
    hostnameOverride: n.name,
    clusterCIDR: n.clusterCidr,
    clientConnection: { kubeconfig },
    // Pod-to-Service-to-pod on one bridge: without masquerading, the reply would
    // bypass the DNAT's conntrack entry.
    iptables: { masqueradeAll: true },
    // Leave the machine's conntrack table size alone (root here lacks CAP_SYS_RESOURCE).
    conntrack: { maxPerCore: 0, min: 0 },
    metricsBindAddress: "127.0.0.1:10249",
    healthzBindAddress: "127.0.0.1:10256",
  });
}
