import {
  type ConfigurationOptions,
  Observable,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from "@kubernetes/client-node";

/**
 * Per-request options that make one @kubernetes/client-node call end when
 * `signal` aborts (it rejects with the signal's reason). The client applies no
 * timeout of its own: a request on a black-holed connection otherwise waits
 * for as long as the kernel keeps the socket, minutes to forever. 2.0.1 has no
 * signal option; its fetch honours RequestContext's signal, which a call-time
 * middleware sets ("append" keeps the client's own middleware).
 */
export function withSignal(signal: AbortSignal): ConfigurationOptions<ObservableMiddleware> {
  const middleware: ObservableMiddleware = {
    pre: (ctx: RequestContext) => {
      ctx.setSignal(signal);
      return new Observable(Promise.resolve(ctx));
    },
    post: (res: ResponseContext) => new Observable(Promise.resolve(res)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}
