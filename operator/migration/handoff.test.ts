import { describe, expect, it } from "vitest";
import { handoffFigures } from "./controller.ts";

const t = {
  checkpointStarted: "2026-01-02T03:04:05.000Z",
  frozen: "2026-01-02T03:04:05.250Z",
  checkpointed: "2026-01-02T03:04:05.400Z",
  restored: "2026-01-02T03:04:08.750Z",
};
const cutOver = "2026-01-02T03:04:09.400Z";

describe("hand-off figures", () => {
  it("Freeze: downtime from the hold to the restored pod Ready, or revealed to its owner when it was", () => {
    expect(
      handoffFigures({ policy: "checkpoint", handoff: "Freeze", timestamps: t }, cutOver),
    ).toEqual({
      downtimeSeconds: 3.5,
    });
    const revealed = { ...t, revealed: "2026-01-02T03:04:09.250Z" };
    expect(
      handoffFigures({ policy: "checkpoint", handoff: "Freeze", timestamps: revealed }, cutOver),
    ).toEqual({ downtimeSeconds: 4 });
  });

  it("Fork: the divergence window from the end of the dump to cutover", () => {
    expect(
      handoffFigures({ policy: "checkpoint", handoff: "Fork", timestamps: t }, cutOver),
    ).toEqual({
      divergenceSeconds: 4,
    });
  });

  it("nothing for a restart migration or a Freeze that never held", () => {
    expect(handoffFigures({ policy: "restart", timestamps: t }, cutOver)).toEqual({});
    const { frozen: _, ...never } = t;
    expect(
      handoffFigures({ policy: "checkpoint", handoff: "Freeze", timestamps: never }, cutOver),
    ).toEqual({});
  });
});
