import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { podBroken } from "./controller.ts";

const pod = (s: Partial<V1ContainerStatus>): V1Pod => ({
  status: {
    phase: "Running",
    containerStatuses: [
      { name: "main", image: "i", imageID: "", ready: false, restartCount: 1, ...s },
    ],
  },
});

describe("podBroken", () => {
  it("names the runtime's own reason when a restored container crash-loops (a CRIU restore that failed at start)", () => {
    const m = podBroken(
      pod({
        state: {
          waiting: {
            reason: "CrashLoopBackOff",
            message: "back-off 10s restarting failed container=main",
          },
        },
        lastState: {
          terminated: {
            exitCode: 128,
            reason: "StartError",
            message:
              "failed to start containerd task: criu failed: type RESTORE errno 0\nlog file: /run/x/restore.log",
          },
        },
      }),
    );
    expect(m).toBe(
      "main: CrashLoopBackOff: back-off 10s restarting failed container=main; last run exited 128 (StartError: failed to start containerd task: criu failed: type RESTORE errno 0 log file: /run/x/restore.log)",
    );
  });

  it("gives a terminated container's reason and message", () => {
    expect(
      podBroken(pod({ state: { terminated: { exitCode: 1, reason: "Error", message: "boom" } } })),
    ).toBe("main exited 1 (Error: boom)");
  });

  it("is undefined while the pod may still start", () => {
    expect(podBroken(pod({ state: { waiting: { reason: "ContainerCreating" } } }))).toBeUndefined();
  });
});
