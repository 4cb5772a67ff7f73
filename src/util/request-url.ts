// The URL of an HTTP request's target, for the monitoring and metrics listeners. Node's parser accepts
// an absolute-form target (`GET http://[ HTTP/1.1`) that the URL parser refuses: parsed in a request
// handler without a guard, one such line from any client would throw out of the handler and stop the
// process. Such a target gets a 400 instead.

import type http from "node:http";

/** The request's target as a URL, or undefined when it is not one. */
export function requestUrl(req: http.IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? "/", "http://localhost");
  } catch {
    return undefined;
  }
}

/** Answers a target that is not a URL. */
export function badTarget(res: http.ServerResponse): void {
  res.writeHead(400, { "Content-Type": "text/plain" });
  res.end("bad request target\n");
}
