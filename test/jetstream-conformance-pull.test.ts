// Pull requests and push flow control as nats-server 2.9 answers them (issue #19): the exact status
// lines a pull request gets back (raw $JS.API subjects, so the status headers are visible), requests
// whose requester went away, and flow-control requests on a push consumer's deliver subject. The same
// expectations run against the bundled broker and the reference nats-server.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { expect, it } from "vitest";
import { describeEachServer, type ServerKind } from "./helpers/servers.js";
import { useJetStreamServer } from "./helpers/jetstream-fixture.js";
import { waitFor } from "./helpers/wait.js";

const SEC_NS = 1_000_000_000;

/** Everything a raw subscription receives, in order. */
interface Inbox {
  subject: string;
  got: Msg[];
  /** "<code> <description>" of each status message received (no payload messages). */
  statuses(): string[];
  data(): Msg[];
  unsubscribe(): void;
}

function listen(nc: NatsConnection, subject = createInbox()): Inbox {
  const got: Msg[] = [];
  const sub = nc.subscribe(subject, { callback: (_err, msg) => void got.push(msg) });
  const isStatus = (m: Msg) => (m.headers?.code ?? 0) > 0;
  return {
    subject,
    got,
    statuses: () => got.filter(isStatus).map((m) => `${m.headers?.code} ${m.headers?.description}`),
    data: () => got.filter((m) => !isStatus(m)),
    unsubscribe: () => sub.unsubscribe(),
  };
}

describeEachServer("JetStream pull requests and flow control", (kind: ServerKind) => {
  const fixture = useJetStreamServer(kind);
  let seq = 0;

  async function setup(consumer: Record<string, unknown> = {}) {
    const n = ++seq;
    const nc = await fixture.nc();
    const jsm = await jetstreamManager(nc);
    const stream = `PULL_${n}`;
    const subj = `pull${n}`;
    await jsm.streams.add({ name: stream, subjects: [`${subj}.>`] });
    await jsm.consumers.add(stream, { durable_name: "D", ack_policy: AckPolicy.Explicit, ...consumer });
    const next = `$JS.API.CONSUMER.MSG.NEXT.${stream}.D`;
    /** Sends a pull request from a fresh inbox and returns what that inbox receives. */
    const pull = async (request: Record<string, unknown>): Promise<Inbox> => {
      const inbox = listen(nc);
      nc.publish(next, JSON.stringify(request), { reply: inbox.subject });
      await nc.flush();
      return inbox;
    };
    const numWaiting = async () => (await jsm.consumers.info(stream, "D")).num_waiting;
    return { nc, jsm, js: jetstream(nc), stream, subj, next, pull, numWaiting };
  }

  /** Waits for the first status message an inbox receives and returns it. */
  async function firstStatus(inbox: Inbox, what: string): Promise<string> {
    await waitFor(what, () => inbox.statuses().length > 0);
    return inbox.statuses()[0];
  }

  it("a no-wait pull after an abandoned request gets the messages, then 408 Request Timeout", async () => {
    const { nc, js, subj, next, pull, numWaiting } = await setup();
    // A request whose requester unsubscribes before anything arrives.
    const gone = listen(nc);
    nc.publish(next, JSON.stringify({ batch: 128 }), { reply: gone.subject });
    await nc.flush();
    gone.unsubscribe();
    await nc.flush();
    await js.publish(`${subj}.a`, "one");
    await js.publish(`${subj}.b`, "two");

    const inbox = await pull({ batch: 13, no_wait: true });
    expect(await firstStatus(inbox, "the no-wait pull to end")).toBe("408 Request Timeout");
    expect(inbox.data().map((m) => m.string())).toEqual(["one", "two"]);
    const status = inbox.got[inbox.got.length - 1];
    expect(status.headers?.get("Nats-Pending-Messages")).toBe("11");
    expect(status.headers?.get("Nats-Pending-Bytes")).toBe("0");
    expect(gone.got).toEqual([]);
    expect(await numWaiting()).toBe(0);
  });

  it("a no-wait pull with nothing to deliver gets 404 No Messages", async () => {
    const { pull, numWaiting } = await setup();
    const inbox = await pull({ batch: 5, no_wait: true });
    expect(await firstStatus(inbox, "the no-wait pull to end")).toBe("404 No Messages");
    expect(await numWaiting()).toBe(0);
  });

  it("a no-wait pull with an expiry waits for the first messages, then ends with 408", async () => {
    const { js, subj, pull, numWaiting } = await setup();
    const inbox = await pull({ batch: 4, no_wait: true, expires: 60 * SEC_NS });
    await waitFor("the request to wait", async () => (await numWaiting()) === 1);
    await js.publish(`${subj}.x`, "late");
    expect(await firstStatus(inbox, "the no-wait pull to end")).toBe("408 Request Timeout");
    expect(inbox.data().map((m) => m.string())).toEqual(["late"]);
    expect(inbox.got[1].headers?.get("Nats-Pending-Messages")).toBe("3");
    expect(await numWaiting()).toBe(0);
  });

  it("a no-wait pull while waiting requests already claim the pending messages gets 408 Requests Pending", async () => {
    const { js, subj, pull, numWaiting } = await setup({ max_ack_pending: 1 });
    await js.publish(`${subj}.a`, "a");
    await js.publish(`${subj}.b`, "b");
    const first = await pull({ batch: 5, expires: 60 * SEC_NS });
    await waitFor("the first request to get one message", () => first.data().length === 1);
    const inbox = await pull({ batch: 1, no_wait: true });
    expect(await firstStatus(inbox, "the refusal")).toBe("408 Requests Pending");
    expect(await numWaiting()).toBe(1);
  });

  it("a pull request on a push consumer gets 409 Consumer is push based", async () => {
    const { jsm, stream, next, nc } = await setup();
    await jsm.consumers.add(stream, { durable_name: "P", deliver_subject: createInbox(), ack_policy: AckPolicy.None });
    const inbox = listen(nc);
    nc.publish(next.replace(/\.D$/, ".P"), JSON.stringify({ batch: 1 }), { reply: inbox.subject });
    expect(await firstStatus(inbox, "the refusal")).toBe("409 Consumer is push based");
  });

  it("a waiting request whose requester lost interest is dropped and gets nothing", async () => {
    const { nc, js, subj, next, pull, numWaiting } = await setup();
    const gone = listen(nc);
    nc.publish(next, JSON.stringify({ batch: 1, expires: 60 * SEC_NS }), { reply: gone.subject });
    const stays = await pull({ batch: 1, expires: 60 * SEC_NS });
    await waitFor("both requests to wait", async () => (await numWaiting()) === 2);
    gone.unsubscribe();
    await nc.flush();
    await waitFor("the abandoned request to leave num_waiting", async () => (await numWaiting()) === 1);
    await js.publish(`${subj}.x`, "only");
    await waitFor("the live request to get the message", () => stays.data().length === 1);
    expect(stays.data()[0].string()).toBe("only");
    expect(gone.got).toEqual([]);
    expect(await numWaiting()).toBe(0);
  });

  it("a batch above max_batch is refused at once: 409 Exceeded MaxRequestBatch", async () => {
    const { pull, numWaiting } = await setup({ max_batch: 2 });
    const inbox = await pull({ batch: 5, expires: 60 * SEC_NS });
    expect(await firstStatus(inbox, "the refusal")).toBe("409 Exceeded MaxRequestBatch of 2");
    expect(await numWaiting()).toBe(0);
  });

  it("an expiry above max_expires is refused at once: 409 Exceeded MaxRequestExpires", async () => {
    const { pull } = await setup({ max_expires: 2 * SEC_NS });
    const inbox = await pull({ batch: 1, expires: 60 * SEC_NS });
    expect(await firstStatus(inbox, "the refusal")).toBe("409 Exceeded MaxRequestExpires of 2s");
  });

  it("max_bytes above the consumer's max_bytes is refused at once: 409 Exceeded MaxRequestMaxBytes", async () => {
    const { pull } = await setup({ max_bytes: 1024 });
    const inbox = await pull({ batch: 1, max_bytes: 4096, expires: 60 * SEC_NS });
    expect(await firstStatus(inbox, "the refusal")).toBe("409 Exceeded MaxRequestMaxBytes of 1024");
  });

  it("a message larger than the request's max_bytes ends it: 409 Message Size Exceeds MaxBytes", async () => {
    const { js, subj, pull, numWaiting } = await setup();
    await js.publish(`${subj}.big`, new Uint8Array(2000));
    const inbox = await pull({ batch: 3, max_bytes: 500, expires: 60 * SEC_NS });
    expect(await firstStatus(inbox, "the end of the request")).toBe("409 Message Size Exceeds MaxBytes");
    expect(inbox.data()).toEqual([]);
    expect(inbox.got[0].headers?.get("Nats-Pending-Messages")).toBe("3");
    expect(inbox.got[0].headers?.get("Nats-Pending-Bytes")).toBe("500");
    expect(await numWaiting()).toBe(0);
  });

  it("a request beyond max_waiting is refused: 409 Exceeded MaxWaiting", async () => {
    const { pull, numWaiting } = await setup({ max_waiting: 1 });
    const first = await pull({ batch: 1, expires: 60 * SEC_NS });
    await waitFor("the first request to wait", async () => (await numWaiting()) === 1);
    const second = await pull({ batch: 1, expires: 60 * SEC_NS });
    expect(await firstStatus(second, "the refusal")).toBe("409 Exceeded MaxWaiting");
    expect(first.got).toEqual([]);
  });

  it("an idle heartbeat longer than half the expiry is refused at once: 400 heartbeat value too large", async () => {
    const { pull, numWaiting } = await setup();
    const inbox = await pull({ batch: 1, expires: 30 * SEC_NS, idle_heartbeat: 20 * SEC_NS });
    expect(await firstStatus(inbox, "the refusal")).toBe("400 Bad Request - heartbeat value too large");
    expect(await numWaiting()).toBe(0);
  });

  // nats-server 2.9 sends about 1,800 a second here; the bundled broker deliberately about 10.
  it(`a 1 ns idle heartbeat is answered with heartbeats${kind === "bundled" ? ", at most every 100 ms" : ""}`, async () => {
    const { pull } = await setup();
    const inbox = await pull({ batch: 1, expires: 30 * SEC_NS, idle_heartbeat: 1 });
    await new Promise((r) => setTimeout(r, 1000));
    const beats = inbox.statuses().filter((s) => s === "100 Idle Heartbeat").length;
    inbox.unsubscribe();
    expect(beats).toBeGreaterThan(0);
    // A timer per request that fired every millisecond, and max_waiting (512) such requests per
    // consumer, would keep the server busy for nobody: the bundled broker looks every 100 ms.
    expect(beats).toBeLessThanOrEqual(kind === "bundled" ? 15 : Infinity);
  });

  it("a heartbeating request whose requester left stays gone when the same inbox comes back", async () => {
    const { nc, next } = await setup();
    const inbox = createInbox();
    const first = listen(nc, inbox);
    nc.publish(next, JSON.stringify({ batch: 1, expires: 30 * SEC_NS, idle_heartbeat: 100_000_000 }), { reply: inbox });
    await waitFor("a first heartbeat", () => first.statuses().length > 0);
    first.unsubscribe();
    await nc.flush();
    await new Promise((r) => setTimeout(r, 500)); // several heartbeat periods with nobody listening
    const again = listen(nc, inbox);
    await new Promise((r) => setTimeout(r, 600));
    again.unsubscribe();
    expect(again.got.map((m) => `${m.headers?.code} ${m.headers?.description}`)).toEqual([]);
  });

  it("nats.js: a fetch after an abandoned request completes, and a no-wait next gets the rest", async () => {
    const { nc, js, jsm, stream, subj, next } = await setup();
    const gone = listen(nc);
    nc.publish(next, JSON.stringify({ batch: 128 }), { reply: gone.subject });
    await nc.flush();
    gone.unsubscribe();
    for (const v of ["a", "b", "c"]) await js.publish(`${subj}.${v}`, v);
    const consumer = await js.consumers.get(stream, "D");
    const fetched: JsMsg[] = [];
    for await (const m of await consumer.fetch({ max_messages: 1, expires: 5000 })) fetched.push(m);
    expect(fetched.map((m) => m.string())).toEqual(["a"]);
    // Ack the message and ask for the next ones without waiting (+NXT with no_wait).
    const inbox = listen(nc);
    fetched[0].next(inbox.subject, { batch: 5, no_wait: true });
    expect(await firstStatus(inbox, "the no-wait next to end")).toBe("408 Request Timeout");
    expect(inbox.data().map((m) => m.string())).toEqual(["b", "c"]);
    const info = await jsm.consumers.info(stream, "D");
    expect(info.num_waiting).toBe(0);
    expect(info.num_ack_pending).toBe(2);
  });

  /** A stream of `count` messages of `size` bytes each, every one telling its index in its first bytes. */
  async function bigStream(jsm: JetStreamManager, count: number, size: number) {
    const n = ++seq;
    const stream = `FC_${n}`;
    await jsm.streams.add({ name: stream, subjects: [`fc${n}.>`] });
    const js = jsm.jetstream();
    for (let i = 0; i < count; i++) {
      const data = new Uint8Array(size).fill(i % 251);
      new DataView(data.buffer).setUint32(0, i);
      await js.publish(`fc${n}.m`, data);
    }
    return stream;
  }

  it("flow control: delivery stalls until the request is answered; heartbeats say it is stalled", async () => {
    const nc = await fixture.nc();
    const jsm = await jetstreamManager(nc);
    const count = 40;
    const stream = await bigStream(jsm, count, 128 * 1024); // 5 MB, above the first flow-control window
    const deliver = listen(nc);
    await jsm.consumers.add(stream, {
      durable_name: "FC",
      deliver_subject: deliver.subject,
      ack_policy: AckPolicy.None,
      flow_control: true,
      idle_heartbeat: SEC_NS,
    });
    const isFc = (m: Msg) => m.headers?.code === 100 && m.headers.description === "FlowControl Request";
    const isHb = (m: Msg) => m.headers?.code === 100 && m.headers.description === "Idle Heartbeat";
    // Not answering the flow-control request: delivery stops, and heartbeats name the request.
    await waitFor("a stalled heartbeat", () => deliver.got.some((m) => isHb(m) && m.headers?.get("Nats-Consumer-Stalled")), 15_000);
    const fc = deliver.got.filter(isFc);
    expect(fc.length).toBe(1);
    expect(fc[0].reply).toMatch(new RegExp(`^\\$JS\\.FC\\.${stream}\\.FC\\.[^.]+$`));
    expect(fc[0].data.length).toBe(0);
    const delivered = deliver.data().length;
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(count);
    const hb = deliver.got.find((m) => isHb(m) && m.headers?.get("Nats-Consumer-Stalled")) as Msg;
    expect(hb.headers?.get("Nats-Consumer-Stalled")).toBe(fc[0].reply);
    expect(hb.headers?.get("Nats-Last-Consumer")).toBe(String(delivered));
    expect(hb.headers?.get("Nats-Last-Stream")).toBe(String(delivered));
    expect(deliver.got.indexOf(fc[0])).toBeLessThan(deliver.got.indexOf(hb));

    // Forged answers (another id, a wildcard, a different consumer's prefix) release nothing: the next
    // heartbeat still names the same request and nothing more was delivered.
    for (const forged of [`$JS.FC.${stream}.FC.forged`, `$JS.FC.${stream}.FC.*`, `$JS.FC.${stream}.OTHER.x`]) nc.publish(forged, new Uint8Array(0));
    await nc.flush();
    const seen = deliver.got.length;
    await waitFor("a heartbeat after the forged answers", () => deliver.got.slice(seen).some(isHb), 15_000);
    const later = deliver.got.slice(seen).find(isHb) as Msg;
    expect(later.headers?.get("Nats-Consumer-Stalled")).toBe(fc[0].reply);
    expect(deliver.data().length).toBe(delivered);

    // Answering every request lets the rest through.
    let answered = 0;
    const answer = () => {
      for (const m of deliver.got.filter(isFc).slice(answered)) {
        nc.publish(m.reply as string, new Uint8Array(0));
        answered++;
      }
    };
    await waitFor(`all ${count} messages`, () => {
      answer();
      return deliver.data().length === count;
    }, 30_000);
    const indexes = deliver.data().map((m) => new DataView(m.data.buffer, m.data.byteOffset).getUint32(0));
    expect(indexes).toEqual([...Array(count).keys()]);
  });

  it("an idle heartbeat names the last stream sequence looked at, even with nothing delivered", async () => {
    const { nc, jsm, js, stream, subj } = await setup();
    for (const v of ["a", "b", "c"]) await js.publish(`${subj}.${v}`, v);
    const deliver = listen(nc);
    await jsm.consumers.add(stream, {
      durable_name: "HB",
      deliver_subject: deliver.subject,
      deliver_policy: DeliverPolicy.New,
      ack_policy: AckPolicy.None,
      flow_control: true,
      idle_heartbeat: SEC_NS,
    });
    expect(await firstStatus(deliver, "a heartbeat")).toBe("100 Idle Heartbeat");
    const hb = deliver.got[0];
    expect(hb.headers?.get("Nats-Last-Consumer")).toBe("0");
    expect(hb.headers?.get("Nats-Last-Stream")).toBe("3");
    expect(hb.headers?.get("Nats-Consumer-Stalled")).toBe("");
  });

  it("flow control: a nats.js push consumer receives a large stream whole while flow-control requests go by", async () => {
    const nc = await fixture.nc();
    const jsm = await jetstreamManager(nc);
    const count = 64;
    const size = 100 * 1024;
    const stream = await bigStream(jsm, count, size); // 6.4 MB
    const prefix = createInbox();
    const deliverSubject = `${prefix}.deliver`;
    // A wildcard subscription sees the deliveries without binding the consumer (only the client does).
    const watch = listen(nc, `${prefix}.*`);
    await jsm.consumers.add(stream, {
      durable_name: "FC",
      deliver_subject: deliverSubject,
      ack_policy: AckPolicy.None,
      flow_control: true,
      idle_heartbeat: SEC_NS,
    });
    const client = await fixture.nc();
    const consumer = await jetstream(client).consumers.getPushConsumer(stream, "FC");
    const messages = await consumer.consume();
    const got: number[] = [];
    for await (const m of messages) {
      expect(m.data.length).toBe(size);
      const i = new DataView(m.data.buffer, m.data.byteOffset).getUint32(0);
      expect(m.data[size - 1]).toBe(i % 251);
      got.push(i);
      if (got.length === count) break;
    }
    expect(got).toEqual([...Array(count).keys()]);
    const requests = watch.got.filter((m) => m.headers?.code === 100 && m.headers.description === "FlowControl Request");
    expect(requests.length).toBeGreaterThan(0);
    for (const r of requests) expect(r.reply).toMatch(new RegExp(`^\\$JS\\.FC\\.${stream}\\.FC\\.`));
  });
});
