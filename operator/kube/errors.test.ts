import { ApiException } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { apiErrorKind, describeError } from "./errors.ts";

const api = (code: number, message?: string) =>
  new ApiException(
    code,
    "HTTP-Code",
    message === undefined ? "" : JSON.stringify({ kind: "Status", message }),
    {},
  );

const sys = (code: string) => Object.assign(new Error(`request failed, reason: ${code}`), { code });

describe("apiErrorKind", () => {
  it("tells a conflict, an undecided answer and a decision apart", () => {
    expect(apiErrorKind(api(409))).toBe("conflict");
    for (const code of [429, 500, 502, 503, 504]) expect(apiErrorKind(api(code))).toBe("transient");
    for (const code of [400, 401, 403, 404, 410, 422])
      expect(apiErrorKind(api(code))).toBe("refused");
  });

  it("counts broken connections and deadlines as transient", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "UND_ERR_SOCKET"])
      expect(apiErrorKind(sys(code)), code).toBe("transient");
    expect(apiErrorKind(Object.assign(new Error("aborted"), { name: "AbortError" }))).toBe(
      "transient",
    );
    expect(
      apiErrorKind(Object.assign(new Error("x"), { name: "FetchError", type: "system" })),
    ).toBe("transient");
    expect(apiErrorKind(new Error("wrapped", { cause: sys("ECONNRESET") }))).toBe("transient");
    expect(apiErrorKind(new TypeError("fetch failed"))).toBe("transient");
  });

  it("calls anything else unexpected: retrying a broken invariant repeats it", () => {
    expect(apiErrorKind(new TypeError("cannot read properties of undefined"))).toBe("unexpected");
    expect(apiErrorKind(new Error("Cannot change the labels"))).toBe("unexpected");
    expect(apiErrorKind("a string")).toBe("unexpected");
    expect(apiErrorKind(undefined)).toBe("unexpected");
  });
});

describe("describeError", () => {
  it("gives the API server's own message with the code", () => {
    expect(
      describeError(
        api(
          500,
          'Internal error occurred: failed calling webhook "x": connect: connection refused',
        ),
      ),
    ).toBe(
      'HTTP 500: Internal error occurred: failed calling webhook "x": connect: connection refused',
    );
    expect(describeError(api(503))).toBe("HTTP 503");
  });

  it("names the errno of a transport error once", () => {
    expect(describeError(sys("ECONNRESET"))).toBe("request failed, reason: ECONNRESET");
    expect(describeError(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }))).toBe(
      "socket hang up (ECONNRESET)",
    );
  });
});
