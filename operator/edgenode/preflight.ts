import type { V1Node } from "@kubernetes/client-node";

/**
 * Set by the cluster admin on a node whose runtime restores checkpoints only
 * when its configuration allows it (containerd 2.2.7+ and 2.3.4+ need
 * `enable_experimental_restore_via_create = true`), which the Node object does
 * not show: `enabled` declares it is on, `disabled` that it is off (on any
 * runtime). Without it such a node is not picked for a checkpoint restore.
 */
export const CHECKPOINT_RESTORE_ANNOTATION = "edgeshift.dev/checkpoint-restore";

/** What a node's container runtime can do for a migration, from Node.status.nodeInfo. */
export interface RuntimeSupport {
  /** e.g. "cri-o://1.30.4" as the node reports it, or "" when unknown */
  containerRuntime: string;
  /**
   * "containerd", "cri-o", another runtime's name, or "" when unknown. A
   * checkpoint restores only on a node of the family that wrote it.
   */
  family: string;
  checkpoint: boolean;
  /** The node may be picked to restore a checkpoint (confirmed where its configuration decides). */
  restore: boolean;
  /**
   * Restore depends on the runtime's configuration and the node carries no
   * CHECKPOINT_RESTORE_ANNOTATION saying it is on.
   */
  restoreUnconfirmed: boolean;
  /** Why the node is not picked for a restore, short, for target choice; "" when it is. */
  restoreProblem: string;
  message: string;
}

type Version = [number, number, number];

function parseVersion(v: string): Version | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

function atLeast(v: Version, min: Version): boolean {
  for (let i = 0; i < 3; i++) {
    const a = v[i] ?? 0;
    const b = min[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

/** What the version alone says about restore. */
type RestoreByVersion =
  | { kind: "yes"; message: string }
  | { kind: "no"; message: string }
  /** Only when a configuration setting the Node does not show is on. */
  | { kind: "configured"; setting: string; message: string };

interface VersionSupport {
  family: string;
  checkpoint: boolean;
  restore: RestoreByVersion;
  /** Why it cannot checkpoint; "" when it can. */
  checkpointMessage: string;
}

/** CRI-O's default became checkpoint_only in 1.37.0 (and in 1.30-1.36 patch releases). */
const CRIO_SETTING = "container_level_enabled = checkpoint_restore in [crio.checkpoint_restore]";

const CONTAINERD_FLAG =
  'enable_experimental_restore_via_create = true under [plugins."io.containerd.cri.v1.runtime"]';

/**
 * Which runtimes checkpoint and restore (KEP-2008, see FACTS.md): CRI-O >= 1.25
 * checkpoints and >= 1.26 restores from a checkpoint image, from 1.37 only with
 * container_level_enabled = checkpoint_restore (off by default); containerd >= 2.0
 * checkpoints; it restores from an image in 2.1 up to 2.2.6 and 2.3.3, from
 * 2.2.7 and 2.3.4 only with enable_experimental_restore_via_create (off by
 * default), and not at all from 2.4; containerd 1.x answers "not implemented".
 */
function versionSupport(rt: string): VersionSupport | { error: string } {
  const [name, rawVersion] = rt.includes("://") ? rt.split("://", 2) : [rt, ""];
  if (!rt || !name) return { error: "node reports no container runtime" };
  const version = parseVersion(rawVersion ?? "");
  if (!version) return { error: `cannot parse runtime version "${rt}"` };
  if (name === "cri-o") {
    const checkpoint = atLeast(version, [1, 25, 0]);
    return {
      family: name,
      checkpoint,
      checkpointMessage: checkpoint ? "" : "CRI-O before 1.25 cannot checkpoint",
      restore: !atLeast(version, [1, 26, 0])
        ? { kind: "no", message: "CRI-O before 1.26 cannot restore from a checkpoint image" }
        : atLeast(version, [1, 37, 0])
          ? {
              kind: "configured",
              setting: CRIO_SETTING,
              message: `CRI-O ${version.join(".")} restores from a checkpoint image only with ${CRIO_SETTING}`,
            }
          : {
              kind: "yes",
              // The version cannot tell which 1.30-1.36 patch has the new default.
              message: `CRI-O restores from a checkpoint image (recent 1.30-1.36 patch releases only with ${CRIO_SETTING}; annotate the node ${CHECKPOINT_RESTORE_ANNOTATION}=disabled where it is off)`,
            },
    };
  }
  if (name === "containerd") {
    if (!atLeast(version, [2, 0, 0])) {
      return {
        family: name,
        checkpoint: false,
        checkpointMessage:
          "containerd 1.x does not implement CheckpointContainer (needs containerd >= 2.0 or CRI-O >= 1.25)",
        restore: { kind: "no", message: "containerd 1.x cannot restore from a checkpoint image" },
      };
    }
    const [major, minor] = version;
    let restore: RestoreByVersion;
    if (major === 2 && minor === 0) {
      restore = { kind: "no", message: "containerd 2.0 cannot restore from a checkpoint image" };
    } else if (atLeast(version, [2, 4, 0])) {
      restore = {
        kind: "no",
        message: "containerd 2.4 removed restore from a checkpoint image",
      };
    } else if (
      (major === 2 && minor === 2 && atLeast(version, [2, 2, 7])) ||
      (major === 2 && minor === 3 && atLeast(version, [2, 3, 4]))
    ) {
      restore = {
        kind: "configured",
        setting: CONTAINERD_FLAG,
        message: `containerd ${version.join(".")} restores from a checkpoint image only with ${CONTAINERD_FLAG}`,
      };
    } else {
      restore = { kind: "yes", message: "containerd restores from a checkpoint image" };
    }
    return { family: name, checkpoint: true, checkpointMessage: "", restore };
  }
  return {
    family: name,
    checkpoint: false,
    checkpointMessage: `runtime "${name}" does not support checkpoints`,
    restore: { kind: "no", message: `runtime "${name}" cannot restore checkpoints` },
  };
}

/**
 * What a node's runtime can do, from its version and the admin's
 * CHECKPOINT_RESTORE_ANNOTATION (`annotation`, undefined when absent):
 * `disabled` turns restore off on any runtime; `enabled` confirms a restore
 * the runtime's configuration decides, and is ignored (said so in the message)
 * where the version cannot restore at all.
 */
export function runtimeSupport(
  containerRuntimeVersion: string | undefined,
  annotation?: string,
  nodeName = "<node>",
): RuntimeSupport {
  const rt = containerRuntimeVersion ?? "";
  const v = versionSupport(rt);
  if ("error" in v) {
    return {
      containerRuntime: rt,
      family: "",
      checkpoint: false,
      restore: false,
      restoreUnconfirmed: false,
      restoreProblem: v.error,
      message: v.error,
    };
  }
  const parts: string[] = [];
  if (!v.checkpoint) parts.push(v.checkpointMessage);
  let restore = false;
  let restoreUnconfirmed = false;
  let restoreProblem = "";
  const a = annotation?.trim();
  const invalid =
    a !== undefined && a !== "enabled" && a !== "disabled"
      ? `; annotation ${CHECKPOINT_RESTORE_ANNOTATION}="${annotation}" ignored (use enabled or disabled)`
      : "";
  if (a === "disabled") {
    restoreProblem = `restore disabled by the annotation ${CHECKPOINT_RESTORE_ANNOTATION}=disabled`;
    parts.push(`restore disabled by the annotation ${CHECKPOINT_RESTORE_ANNOTATION}=disabled`);
  } else if (v.restore.kind === "yes") {
    restore = true;
    parts.push(v.restore.message + invalid);
  } else if (v.restore.kind === "no") {
    restoreProblem = `${rt} cannot restore checkpoints`;
    parts.push(
      v.restore.message +
        (a === "enabled"
          ? `; annotation ${CHECKPOINT_RESTORE_ANNOTATION}=enabled ignored: this runtime cannot restore`
          : invalid),
    );
  } else if (a === "enabled") {
    restore = true;
    parts.push(
      `${v.restore.message}, confirmed by the annotation ${CHECKPOINT_RESTORE_ANNOTATION}=enabled`,
    );
  } else {
    restoreUnconfirmed = true;
    restoreProblem = `restore unconfirmed: ${rt} restores checkpoints only with ${v.restore.setting.split(" under ")[0]}, and the node has no annotation ${CHECKPOINT_RESTORE_ANNOTATION}=enabled`;
    parts.push(
      `restore unconfirmed: ${v.restore.message}, which the Node does not show; once it is set, confirm it with \`kubectl annotate node ${nodeName} ${CHECKPOINT_RESTORE_ANNOTATION}=enabled\`${invalid}`,
    );
  }
  if (v.checkpoint && parts.length === 1)
    parts.unshift(`${v.family === "cri-o" ? "CRI-O" : v.family} checkpoints`);
  return {
    containerRuntime: rt,
    family: v.family,
    checkpoint: v.checkpoint,
    restore,
    restoreUnconfirmed,
    restoreProblem,
    message: parts.join("; "),
  };
}

/** runtimeSupport of a Node object (runtime version and the admin's annotation). */
export function nodeRuntimeSupport(node: V1Node | undefined): RuntimeSupport {
  return runtimeSupport(
    node?.status?.nodeInfo?.containerRuntimeVersion,
    node?.metadata?.annotations?.[CHECKPOINT_RESTORE_ANNOTATION],
    node?.metadata?.name,
  );
}

/**
 * Why `target` cannot restore a checkpoint taken on `source`, or undefined
 * when it can: it must restore at all, and be of the source's runtime family
 * (containerd and CRI-O cannot read each other's checkpoints, FACTS.md).
 */
export function restoreRefusal(source: RuntimeSupport, target: RuntimeSupport): string | undefined {
  if (!target.restore) return target.restoreProblem || "cannot restore checkpoints";
  if (!source.family) return "the source node's runtime is unknown";
  if (target.family !== source.family) {
    return `runtime ${target.containerRuntime} cannot restore a checkpoint taken by ${source.containerRuntime} (a checkpoint restores only on the runtime family that wrote it)`;
  }
  return undefined;
}

export interface NodeSupport extends RuntimeSupport {
  name: string;
}

/** The cloud nodes that can restore what `edge` checkpoints, by name. */
export function restoreTargets(edge: RuntimeSupport, cloud: readonly NodeSupport[]): string[] {
  return cloud.filter((c) => restoreRefusal(edge, c) === undefined).map((c) => c.name);
}

const MAX_LISTED = 10;

function list(nodes: readonly NodeSupport[]): string {
  const shown = nodes
    .slice(0, MAX_LISTED)
    .map((n) => `${n.name} (${n.containerRuntime || "unknown runtime"})`);
  if (nodes.length > MAX_LISTED) shown.push(`and ${nodes.length - MAX_LISTED} more`);
  return shown.join(", ");
}

/**
 * Summary for the EdgeNode's CheckpointSupported condition: True when every
 * edge node can checkpoint and, when `cloud` is given, has a cloud node that
 * restores its checkpoints (same runtime family, restore on or confirmed).
 * Cloud nodes that cannot be picked for a restore are named too.
 */
export function checkpointCondition(
  nodes: readonly NodeSupport[],
  cloud?: readonly NodeSupport[],
): {
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
  const homeless =
    cloud === undefined
      ? []
      : nodes.filter((n) => n.checkpoint && restoreTargets(n, cloud).length === 0);
  const parts: string[] = [];
  if (unable.length > 0) {
    parts.push(`${unable.length} of ${nodes.length} nodes cannot checkpoint: ${list(unable)}`);
  }
  if (homeless.length > 0) {
    parts.push(
      `${homeless.length} of ${nodes.length} nodes have no cloud node that can restore their checkpoints (same runtime family, restore enabled): ${list(homeless)}`,
    );
  }
  if (parts.length > 0) parts.push(`${parts.pop()}; the restart policy still works there`);
  const notRestoring = (cloud ?? []).filter((c) => !c.restore);
  if (notRestoring.length > 0) {
    const unconfirmed = notRestoring.filter((c) => c.restoreUnconfirmed);
    parts.push(
      `cloud node${notRestoring.length === 1 ? "" : "s"} not picked for a checkpoint restore: ${list(notRestoring)}${
        unconfirmed.length > 0
          ? ` (restore unconfirmed on ${unconfirmed
              .map((c) => c.name)
              .slice(0, MAX_LISTED)
              .join(", ")}: see status.cloudNodes)`
          : ""
      }`,
    );
  }
  const bad = unable.length + homeless.length;
  if (bad === 0) {
    const all =
      cloud === undefined
        ? `all ${nodes.length} nodes can checkpoint`
        : `all ${nodes.length} nodes can checkpoint and have a cloud node to restore on`;
    return {
      status: "True",
      reason: "AllNodesSupported",
      message: [all, ...parts].join("; "),
    };
  }
  return {
    status: "False",
    reason: bad === nodes.length ? "NoNodesSupported" : "SomeNodesUnsupported",
    message: parts.join("; "),
  };
}
