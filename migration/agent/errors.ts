// Where an error in one of the agent's steps came from decides what becomes of
// the step. Each component the agent talks to names its own failures: the
// kubelet client throws CheckpointError, archive handling ArchiveError, the
// registry client RegistryError (its network failures included). What is left
// is the agent's own Kubernetes API calls (reading and writing the Migration):
// an API server that blips or refuses is no verdict on the checkpoint or the
// image, so those never fail the step; they go back to the work queue, whose
// backoff retries them until the operator's CheckpointTimeout ends the step.
import { apiErrorKind, describeError } from "../../operator/kube/errors.ts";
import { RequeueError } from "../../operator/kube/workqueue.ts";
import { ArchiveError } from "../archive/errors.ts";
import { CheckpointError } from "../kubelet/client.ts";
import { RegistryError } from "../registry/client.ts";
import { FreezeError } from "./freezer.ts";

/** The agent's conditions on a Migration, one per step. */
export type StepCondition = "Checkpointed" | "ImagePushed";

/** A step failed for good: its condition goes False with this reason. */
export class StepFailure extends Error {
  override name = "StepFailure";
  readonly condition: StepCondition;
  readonly reason: string;
  constructor(condition: StepCondition, reason: string, message: string) {
    super(message);
    this.condition = condition;
    this.reason = reason;
  }
}

/**
 * What a failed step leaves the agent to do:
 * - `conflict`: 409, the Migration moved on; requeue quietly and start from it.
 * - `apiUnavailable`: the API server did not decide (429, 5xx such as a webhook
 *   it could not call, a refused or reset connection, a timeout): back off.
 * - `apiRefused`: the API server decided against the request (403 from an
 *   admission policy, 422): nothing can be recorded, so back off as well,
 *   saying so loudly; someone has to change the policy or the object.
 * - `failed`: the step's own verdict, written as a False condition.
 */
export type StepOutcome =
  | { kind: "conflict" }
  | { kind: "apiUnavailable"; status: number | undefined; message: string }
  | { kind: "apiRefused"; status: number; message: string }
  | { kind: "failed"; failure: StepFailure };

/**
 * Classifies an error thrown by a step of the agent. `step` is the condition of
 * the step that was running: an error no component claims (a file the agent
 * could not read, a bug) fails that step.
 */
export function classifyStepError(err: unknown, step: StepCondition): StepOutcome {
  if (err instanceof StepFailure) return { kind: "failed", failure: err };
  if (err instanceof RequeueError) return { kind: "conflict" };
  if (err instanceof FreezeError)
    return {
      kind: "failed",
      failure: new StepFailure("Checkpointed", "FreezeFailed", err.message),
    };
  if (err instanceof CheckpointError) {
    const reason = err.reason === "RuntimeUnsupported" ? "RuntimeUnsupported" : "CheckpointFailed";
    return {
      kind: "failed",
      failure: new StepFailure("Checkpointed", reason, `${err.reason}: ${err.message}`),
    };
  }
  if (err instanceof ArchiveError) {
    return {
      kind: "failed",
      failure: new StepFailure("Checkpointed", "ArchiveInvalid", err.message),
    };
  }
  if (err instanceof RegistryError) {
    // No answer (status undefined: refused, reset, timed out) or a 5xx: the registry is down.
    const down = err.status === undefined || err.status >= 500;
    return {
      kind: "failed",
      failure: new StepFailure(
        "ImagePushed",
        down ? "RegistryUnavailable" : "PushFailed",
        err.message,
      ),
    };
  }
  // Every other component wraps its transport failures: what is left is the API client's.
  const api = apiErrorKind(err);
  if (api === "conflict") return { kind: "conflict" };
  const status = (err as { code?: unknown } | undefined)?.code;
  const code = typeof status === "number" ? status : undefined;
  if (api === "transient")
    return { kind: "apiUnavailable", status: code, message: describeError(err) };
  if (api === "refused") {
    return { kind: "apiRefused", status: code ?? 0, message: describeError(err) };
  }
  const message = (err as Error | undefined)?.message ?? String(err);
  return {
    kind: "failed",
    failure:
      step === "Checkpointed"
        ? new StepFailure("Checkpointed", "CheckpointFailed", message)
        : new StepFailure("ImagePushed", "PushFailed", message),
  };
}
