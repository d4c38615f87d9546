import { expect, it } from "vitest";
import { parseQuantity } from "./quantity.ts";

it.each([
  ["500m", 0.5],
  ["2", 2],
  ["1.5", 1.5],
  ["128Mi", 128 * 2 ** 20],
  ["1Gi", 2 ** 30],
  ["1G", 1e9],
  ["1e3", 1000],
  ["100k", 100_000],
  ["250u", 0.00025],
  ["abc", undefined],
  ["1Qi", undefined],
  [undefined, undefined],
])("parseQuantity(%s) = %s", (q, v) => {
  const got = parseQuantity(q);
  if (v === undefined) expect(got).toBeUndefined();
  else expect(got).toBeCloseTo(v, 9);
});
