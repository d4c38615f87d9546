/** What a node's container runtime can do for a migration, from Node.status.nodeInfo. */
export interface RuntimeSupport {
  /** e.g. "cri-o://1.30.4" as the node reports it, or "" when unknown */
  containerRuntime: string;
  checkpoint: boolean;
  restore: boolean;
  message: string;
}

function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

function atLeast(v: [number, number, number], min: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) {
    const a = v[i] ?? 0;
    const b = min[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

/**
 * Which runtimes checkpoint and restore (KEP-2008, see FACTS.md): CRI-O >= 1.25
 * checkpoints and >= 1.26 restores from a checkpoint image; containerd >= 2.0
 * checkpoints and restores from an image only in 2.1 up to 2.3.3 (off by default
 * from 2.3.4, removed in 2.4); containerd 1.x answers "not implemented".
 */
export function runtimeSupport(containerRuntimeVersion: string | undefined): RuntimeSupport {
  const rt = containerRuntimeVersion ?? "";
  const [name, rawVersion] = rt.includes("://") ? rt.split("://", 2) : [rt, ""];
  const version = parseVersion(rawVersion ?? "");
  if (!rt || !name) {
    return {
      containerRuntime: rt,
      checkpoint: false,
      restore: false,
      message: "node reports no container runtime",
    };
  }
  if (!version) {
    return {
      containerRuntime: rt,
      checkpoint: false,
      restore: false,
      message: `cannot parse runtime version "${rt}"`,
    };
  }
  if (name === "cri-o") {
    const checkpoint = atLeast(version, [1, 25, 0]);
    const restore = atLeast(version, [1, 26, 0]);
    const message = !checkpoint
      ? "CRI-O before 1.25 cannot checkpoint"
      : !restore
        ? "CRI-O 1.25 checkpoints but cannot restore from a checkpoint image (needs 1.26)"
        : "CRI-O checkpoints and restores";
    return { containerRuntime: rt, checkpoint, restore, message };
  }
  if (name === "containerd") {
    if (!atLeast(version, [2, 0, 0])) {
      return {
        containerRuntime: rt,
        checkpoint: false,
        restore: false,
        message:
          "containerd 1.x does not implement CheckpointContainer (needs containerd >= 2.0 or CRI-O >= 1.25)",
      };
    }
    const restore = atLeast(version, [2, 1, 0]) && !atLeast(version, [2, 3, 4]);
    return {
      containerRuntime: rt,
      checkpoint: true,
      restore,
      message: restore
        ? "containerd checkpoints and restores from a checkpoint image"
        : atLeast(version, [2, 3, 4])
          ? "containerd >= 2.3.4 checkpoints; restore from a checkpoint image is off or removed"
          : "containerd 2.0 checkpoints but cannot restore from a checkpoint image (2.1-2.3 can)",
    };
  }
  return {
    containerRuntime: rt,
    checkpoint: false,
    restore: false,
    message: `runtime "${name}" does not support checkpoints`,
  };
}

export interface NodeSupport extends RuntimeSupport {
  name: string;
}

/** Summary for the EdgeNode's CheckpointSupported condition. */
export function checkpointCondition(nodes: readonly NodeSupport[]): {
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
} {
  if (nodes.length === 0) {
    return {
      status: "Unknown",
      reason: "NoMatchingNodes",
      message: "no node matches spec.nodeSelector",
    };
  }
  const unable = nodes.filter((n) => !n.checkpoint);
  if (unable.length === 0) {
    return {
      status: "True",
      reason: "AllNodesSupported",
      message: `all ${nodes.length} nodes can checkpoint`,
    };
  }
  const list = unable
    .map((n) => `${n.name} (${n.containerRuntime || "unknown runtime"})`)
    .join(", ");
  return {
    status: "False",
    reason: unable.length === nodes.length ? "NoNodesSupported" : "SomeNodesUnsupported",
    message: `${unable.length} of ${nodes.length} nodes cannot checkpoint: ${list}; the restart policy still works there`,
  };
}
