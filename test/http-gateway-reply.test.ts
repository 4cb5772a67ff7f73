// The gateway's mapping of a NATS reply to an HTTP response (mapReply in src/node-agent/http-gateway.ts):
// a workload's reply is not trusted, so its status header is read strictly and its framing and nex/NATS
// headers never reach the client. (Headers Node will not write are the gateway's 502: e2e-http.test.ts.)

import { describe, expect, it } from "vitest";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { mapReply } from "../src/node-agent/http-gateway.js";

const reply = (pairs: [string, string][]) => {
  const h = natsHeaders();
  for (const [k, v] of pairs) h.append(k, v);
  return h;
};
const body = new TextEncoder().encode("hi");

describe("mapReply", () => {
  it("takes Nex-Status as three digits 200-599, 200 when absent", () => {
    expect(mapReply(undefined, body).status).toBe(200);
    expect(mapReply(reply([["X-A", "1"]]), body).status).toBe(200);
    for (const status of ["200", "201", "404", "599"]) expect(mapReply(reply([["Nex-Status", status]]), body).status, status).toBe(Number(status));
  });

  it("answers 502 for a Nex-Status that is not three digits 200-599, however Number() would read it", () => {
    for (const status of ["abc", "99", "199", "600", "1.5", "2e2", "0xc8", "200.0", "+200", "0200", "2\u0660\u0660", "\u0662\u0660\u0660", "Infinity"]) {
      const r = mapReply(reply([["Nex-Status", status]]), body);
      expect(r.status, status).toBe(502);
      expect(r.body).toBe("502 Bad Gateway\n");
    }
  });

  it("drops framing, Nex-* and Nats-* headers, keeps the rest (repeated ones as a list), no body for 204 and 304", () => {
    const r = mapReply(reply([["Nex-Status", "201"], ["Content-Length", "9"], ["Transfer-Encoding", "chunked"], ["Connection", "close"], ["Nex-Other", "1"], ["Nats-Msg-Id", "x"], ["X-A", "1"], ["X-A", "2"], ["Set-Cookie", "a=1"]]), body);
    expect(r.status).toBe(201);
    expect(r.headers).toEqual({ "X-A": ["1", "2"], "Set-Cookie": "a=1" });
    expect(r.body).toBe(body);
    for (const status of ["204", "304"]) expect(mapReply(reply([["Nex-Status", status]]), body).body).toHaveLength(0);
  });

  it("turns an error reply into its status line only: 413, 503, 504 kept, the rest 500", () => {
    for (const [code, status] of [["413", 413], ["503", 503], ["504", 504], ["400", 500], ["500", 500], ["abc", 500]] as const) {
      const r = mapReply(reply([["Nats-Service-Error-Code", code], ["Nats-Service-Error", "secret stack"]]), body);
      expect(r.status, code).toBe(status);
      expect(String(r.body)).not.toMatch(/secret/);
    }
  });
});
