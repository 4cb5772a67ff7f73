// The stream and consumer configurations nats-server 2.9.10 refuses (codes, err_codes and texts), what it
// echoes back for an ordered consumer, and stream republish: the same expectations against the bundled
// broker and the reference nats-server.
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers, type Msg, type MsgHdrs } from "@nats-io/transport-node";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { describeEachServer, type ServerKind } from "./helpers/servers.js";
import { useJetStreamServer } from "./helpers/jetstream-fixture.js";
import { waitFor } from "./helpers/wait.js";

const MS_NS = 1_000_000;
const SEC_NS = 1_000_000_000;

type ApiAnswer = Record<string, unknown> & { error?: { code: number; err_code: number; description: string } };

/** nats-server's "invalid stream config" error (500 / 10052) with its detail. */
const streamConfigError = (description: string) => ({ code: 500, err_code: 10052, description });

/** Header pairs of a message in order, as the subscriber sees them. */
function headerPairs(h: MsgHdrs | undefined): [string, string][] {
  return h ? [...h].map(([k, v]) => [k, v.join(",")] as [string, string]) : [];
}

describeEachServer("JetStream configuration conformance", (kind: ServerKind) => {
  const js = useJetStreamServer(kind);
  let seq = 0;
  /** A fresh stream name and subject prefix per call, so tests never overlap. */
  const fresh = (tag: string) => {
    const n = ++seq;
    return { name: `${tag.toUpperCase()}_${n}`, subj: `${tag}${n}` };
  };

  /** A raw JetStream API request and its JSON answer. */
  async function api(subject: string, body: unknown): Promise<ApiAnswer> {
    const c = await js.nc();
    const m = await c.request(`$JS.API.${subject}`, typeof body === "string" ? body : JSON.stringify(body), { timeout: 5000 });
    return m.json<ApiAnswer>();
  }

  const createStream = (name: string, config: Record<string, unknown>) => api(`STREAM.CREATE.${name}`, { name, ...config });
  const updateStream = (name: string, config: Record<string, unknown>) => api(`STREAM.UPDATE.${name}`, { name, ...config });
  const createConsumer = (stream: string, config: Record<string, unknown>) =>
    api(`CONSUMER.CREATE.${stream}${config.durable_name ? `.${config.durable_name as string}` : ""}`, { stream_name: stream, config });

  /** A stream on `<subj>.>` that the consumer cases can use. */
  async function stream(tag: string, extra: Record<string, unknown> = {}): Promise<{ name: string; subj: string }> {
    const { name, subj } = fresh(tag);
    const r = await createStream(name, { subjects: [`${subj}.>`], ...extra });
    expect(r.error).toBeUndefined();
    return { name, subj };
  }

  async function expectNoStream(name: string): Promise<void> {
    expect((await api(`STREAM.INFO.${name}`, "")).error).toMatchObject({ err_code: 10059 });
  }

  describe("streams", () => {
    it("#4 a stream can not be created sealed (500 / 10052), only sealed by an update", async () => {
      const { name, subj } = fresh("sealed");
      const r = await createStream(name, { subjects: [`${subj}.>`], sealed: true });
      expect(r.error).toEqual(streamConfigError("stream configuration for create can not be sealed"));
      await expectNoStream(name);

      expect((await createStream(name, { subjects: [`${subj}.>`], allow_rollup_hdrs: true, max_age: 60 * SEC_NS })).error).toBeUndefined();
      const sealed = await updateStream(name, { subjects: [`${subj}.>`], allow_rollup_hdrs: true, max_age: 60 * SEC_NS, sealed: true });
      expect(sealed.error).toBeUndefined();
      // Sealing also takes away what could still remove messages.
      expect(sealed.config).toMatchObject({ sealed: true, deny_delete: true, deny_purge: true, discard: "new", allow_rollup_hdrs: false, max_age: 0 });
      const unseal = await updateStream(name, { subjects: [`${subj}.>`], deny_delete: true, deny_purge: true, discard: "new" });
      expect(unseal.error).toEqual(streamConfigError("stream configuration update can not unseal a sealed stream"));
    });

    it("#6 a stream description over 4096 bytes is refused (500 / 10052); 4096 bytes are fine", async () => {
      const tooLong = streamConfigError("stream description is too long, maximum allowed is 4096");
      const { name, subj } = fresh("desc");
      expect((await createStream(name, { subjects: [`${subj}.>`], description: "x".repeat(4097) })).error).toEqual(tooLong);
      // Bytes, not characters: 2049 two-byte characters are 4098 bytes.
      expect((await createStream(name, { subjects: [`${subj}.>`], description: "é".repeat(2049) })).error).toEqual(tooLong);
      await expectNoStream(name);
      const ok = await createStream(name, { subjects: [`${subj}.>`], description: "x".repeat(4096) });
      expect(ok.error).toBeUndefined();
      const update = await updateStream(name, { subjects: [`${subj}.>`], description: "y".repeat(4097) });
      expect(update.error).toEqual(tooLong);
    });

    it("#10 limits and windows are refused as nats-server refuses them", async () => {
      const cases: [Record<string, unknown>, ApiAnswer["error"]][] = [
        [{ max_age: 50 * MS_NS }, streamConfigError("max age needs to be >= 100ms")],
        // An unset duplicates window follows a shorter max_age, so a negative age shows up as a negative window.
        [{ max_age: -5 }, streamConfigError("duplicates window can not be negative")],
        [{ max_age: -5, duplicate_window: SEC_NS }, streamConfigError("duplicates window can not be larger then max age")],
        [{ duplicate_window: -5 }, streamConfigError("duplicates window can not be negative")],
        [{ duplicate_window: 5 * MS_NS }, streamConfigError("duplicates window needs to be >= 100ms")],
        [{ max_age: SEC_NS, duplicate_window: 2 * SEC_NS }, streamConfigError("duplicates window can not be larger then max age")],
        [{ deny_purge: true, allow_rollup_hdrs: true }, streamConfigError("roll-ups require the purge permission")],
        [{ discard_new_per_subject: true }, streamConfigError("discard new per subject requires discard new policy to be set")],
        [{ discard_new_per_subject: true, discard: "new" }, streamConfigError("discard new per subject requires max msgs per subject > 0")],
        [{ allow_direct: true, mirror_direct: true }, streamConfigError("stream has no mirror but does have mirror direct")],
        [{ num_replicas: 6 }, streamConfigError("maximum replicas is 5")],
        [{ num_replicas: 3 }, { code: 500, err_code: 10074, description: "replicas > 1 not supported in non-clustered mode" }],
        [{ num_replicas: -1 }, { code: 400, err_code: 10133, description: "replicas count cannot be negative" }],
      ];
      for (const [extra, error] of cases) {
        const { name, subj } = fresh("limits");
        const r = await createStream(name, { subjects: [`${subj}.>`], ...extra });
        expect.soft(r.error, JSON.stringify(extra)).toEqual(error);
      }
    });

    it("#10 names of up to 255 bytes are kept over a restart; longer ones are refused", async () => {
      const long = (prefix: string, bytes: number) => prefix + "n".repeat(bytes - prefix.length);
      const tooLongStream = long(`LONG${++seq}_`, 256);
      expect((await createStream(tooLongStream, { subjects: [`long${seq}.>`] })).error).toEqual(
        streamConfigError("stream name is too long, maximum allowed is 255"),
      );
      const streamName = long(`LONG${++seq}_`, 255);
      expect((await createStream(streamName, { subjects: [`long${seq}.>`] })).error).toBeUndefined();
      const tooLongConsumer = await createConsumer(streamName, { durable_name: long("d", 256), ack_policy: "explicit" });
      expect(tooLongConsumer.error).toEqual({ code: 400, err_code: 10102, description: "consumer name is too long, maximum allowed is 255" });
      const durable = long("d", 255);
      expect((await createConsumer(streamName, { durable_name: durable, ack_policy: "explicit" })).error).toBeUndefined();
      await js.server().restart();
      const info = await api(`CONSUMER.INFO.${streamName}.${durable}`, "");
      expect(info.error).toBeUndefined();
      expect(info.name).toBe(durable);
    });

    it("#10 a create without a name in the body does not match the subject's name (400 / 10056)", async () => {
      const { name, subj } = fresh("noname");
      const r = await api(`STREAM.CREATE.${name}`, { subjects: [`${subj}.>`] });
      expect(r.error).toEqual({ code: 400, err_code: 10056, description: "stream name in subject does not match request" });
    });

    it("#10 negative message and byte limits are accepted and kept, as by nats-server", async () => {
      const { name, subj } = fresh("neg");
      const r = await createStream(name, { subjects: [`${subj}.>`], max_msgs: -5, max_bytes: -7, max_msgs_per_subject: -3 });
      expect(r.error).toBeUndefined();
      expect(r.config).toMatchObject({ max_msgs: -5, max_bytes: -7, max_msgs_per_subject: -3 });
    });

    it("#10 subjects: invalid, duplicate and overlapping ones are refused", async () => {
      const { name, subj } = fresh("subj");
      const cases: [string[], ApiAnswer["error"]][] = [
        [[`${subj}..a`], streamConfigError("invalid subject")],
        [[`${subj}.a`, `${subj}.a`], streamConfigError("duplicate subjects detected")],
        [[`${subj}.>`, `${subj}.a`], streamConfigError(`subject "${subj}.>" overlaps with "${subj}.a"`)],
        [[`${subj}.a`, `${subj}.*`, `${subj}.>`], streamConfigError(`subject "${subj}.a" overlaps with "${subj}.*"`)],
      ];
      for (const [subjects, error] of cases) {
        expect.soft((await createStream(name, { subjects })).error, subjects.join(" ")).toEqual(error);
      }
      await expectNoStream(name);
    });

    it("#10 an update may not change max_consumers or take back deny_delete / deny_purge", async () => {
      const { name, subj } = fresh("upd");
      const base = { subjects: [`${subj}.>`], deny_delete: true, deny_purge: true };
      expect((await createStream(name, base)).error).toBeUndefined();
      expect((await updateStream(name, { ...base, max_consumers: 5 })).error).toEqual(
        streamConfigError("stream configuration update can not change MaxConsumers"),
      );
      expect((await updateStream(name, { ...base, deny_delete: false })).error).toEqual(
        streamConfigError("stream configuration update can not cancel deny message deletes"),
      );
      expect((await updateStream(name, { ...base, deny_purge: false })).error).toEqual(
        streamConfigError("stream configuration update can not cancel deny purge"),
      );
      expect((await updateStream(name, { ...base, max_msgs: 10 })).error).toBeUndefined();
    });

    it("#10 discard_new_per_subject refuses a message over max_msgs_per_subject (503 / 10077)", async () => {
      const { name, subj } = await stream("dnp", { discard: "new", discard_new_per_subject: true, max_msgs_per_subject: 2 });
      const c = await js.nc();
      const jsc = jetstream(c);
      await jsc.publish(`${subj}.a`, "1");
      await jsc.publish(`${subj}.a`, "2");
      await jsc.publish(`${subj}.b`, "other subject");
      const m = await c.request(`${subj}.a`, "3", { timeout: 5000 });
      expect(m.json()).toEqual({ error: { code: 503, err_code: 10077, description: "maximum messages per subject exceeded" }, stream: name, seq: 0 });
      const info = await api(`STREAM.INFO.${name}`, "");
      expect((info.state as { messages: number }).messages).toBe(3);
    });
  });

  describe("consumers", () => {
    it("#5 backoff needs max_deliver above the number of backoff values (400 / 10116)", async () => {
      const { name } = await stream("backoff");
      const refused = { code: 400, err_code: 10116, description: "max deliver is required to be > length of backoff values" };
      const backoff = [SEC_NS, 2 * SEC_NS];
      for (const max_deliver of [undefined, 1, 2, -5]) {
        const r = await createConsumer(name, { durable_name: `b${max_deliver ?? "unset"}`.replace("-", "m"), ack_policy: "explicit", backoff, max_deliver });
        expect.soft(r.error, `max_deliver ${max_deliver}`).toEqual(refused);
      }
      const ok = await createConsumer(name, { durable_name: "b3", ack_policy: "explicit", backoff, max_deliver: 3, ack_wait: 5 * SEC_NS });
      expect(ok.error).toBeUndefined();
      // The first backoff replaces ack_wait.
      expect(ok.config).toMatchObject({ max_deliver: 3, backoff, ack_wait: SEC_NS });
    });

    it("#6 a consumer description over 4096 bytes is refused (400 / 10107)", async () => {
      const { name } = await stream("cdesc");
      const r = await createConsumer(name, { durable_name: "long", ack_policy: "explicit", description: "x".repeat(4097) });
      expect(r.error).toEqual({ code: 400, err_code: 10107, description: "consumer description is too long, maximum allowed is 4096" });
      const ok = await createConsumer(name, { durable_name: "fits", ack_policy: "explicit", description: "x".repeat(4096) });
      expect(ok.error).toBeUndefined();
    });

    it("#7 num_replicas 1 is echoed as 1 (ordered consumers ask for it), absent as 0; more or negative is refused", async () => {
      const { name, subj } = await stream("ordered");
      const c = await js.nc();
      const jsc = jetstream(c);
      await jsc.publish(`${subj}.a`, "one");
      const ordered = await jsc.consumers.get(name);
      const m = await ordered.next({ expires: 5000 });
      expect(m?.string()).toBe("one");
      const info = await ordered.info(true);
      expect(info.config).toMatchObject({ num_replicas: 1, mem_storage: true, ack_policy: "none" });

      const one = await createConsumer(name, { durable_name: "r1", ack_policy: "explicit", num_replicas: 1 });
      expect((one.config as { num_replicas: number }).num_replicas).toBe(1);
      const unset = await createConsumer(name, { durable_name: "r0", ack_policy: "explicit" });
      expect((unset.config as { num_replicas: number }).num_replicas).toBe(0);
      expect((await createConsumer(name, { durable_name: "r3", ack_policy: "explicit", num_replicas: 3 })).error).toEqual({
        code: 500,
        err_code: 10074,
        description: "replicas > 1 not supported in non-clustered mode",
      });
      expect((await createConsumer(name, { durable_name: "rm", ack_policy: "explicit", num_replicas: -1 })).error).toEqual({
        code: 400,
        err_code: 10133,
        description: "replicas count cannot be negative",
      });
    });

    it("#10 each deliver policy takes only its own start option (400 / 10094)", async () => {
      const { name, subj } = await stream("policy");
      const time = "2020-01-01T00:00:00Z";
      const cases: [Record<string, unknown>, string][] = [
        [{ deliver_policy: "all", opt_start_seq: 3 }, "deliver all, but optional start sequence is also set"],
        [{ deliver_policy: "all", opt_start_time: time }, "deliver all, but optional start time is also set"],
        [{ deliver_policy: "last", opt_start_seq: 3 }, "deliver last, but optional start sequence is also set"],
        [{ deliver_policy: "new", opt_start_time: time }, "deliver new, but optional start time is also set"],
        [{ deliver_policy: "last_per_subject", filter_subject: `${subj}.a`, opt_start_seq: 3 }, "deliver last per subject, but optional start sequence is also set"],
        [{ deliver_policy: "last_per_subject" }, "deliver last per subject, but optional filter subject is not set"],
        [{ deliver_policy: "by_start_sequence" }, "deliver by start sequence, but optional start sequence is not set"],
        [{ deliver_policy: "by_start_sequence", opt_start_seq: 3, opt_start_time: time }, "deliver by start sequence, but optional start time is also set"],
        [{ deliver_policy: "by_start_time" }, "deliver by start time, but optional start time is not set"],
        // sic: nats-server doubles the word.
        [{ deliver_policy: "by_start_time", opt_start_time: time, opt_start_seq: 3 }, "deliver by start time, but optional start start sequence is also set"],
      ];
      for (const [policy, text] of cases) {
        const r = await createConsumer(name, { durable_name: "p", ack_policy: "explicit", ...policy });
        expect.soft(r.error, JSON.stringify(policy)).toEqual({ code: 400, err_code: 10094, description: `consumer delivery policy is ${text}` });
      }
      for (const ok of [{ deliver_policy: "by_start_time", opt_start_time: time }, { deliver_policy: "last_per_subject", filter_subject: `${subj}.a` }]) {
        const r = await createConsumer(name, { ack_policy: "explicit", ...ok });
        expect.soft(r.error, JSON.stringify(ok)).toBeUndefined();
      }
    });

    it("#10 pull and push limits are refused as nats-server refuses them", async () => {
      const { name, subj } = await stream("climits");
      const sampling = (detail: string) => ({ code: 400, err_code: 10095, description: `failed to parse consumer sampling configuration: ${detail}` });
      const cases: [Record<string, unknown>, ApiAnswer["error"]][] = [
        [{ max_waiting: -5 }, { code: 400, err_code: 10087, description: "consumer max waiting needs to be positive" }],
        [{ max_batch: -5 }, { code: 400, err_code: 10114, description: "consumer max request batch needs to be > 0" }],
        [{ max_expires: MS_NS / 2 }, { code: 400, err_code: 10115, description: "consumer max request expires needs to be >= 1ms" }],
        [{ rate_limit_bps: 1000 }, { code: 400, err_code: 10086, description: "consumer in pull mode can not have rate limit set" }],
        [{ deliver_subject: `${subj}.loop` }, { code: 400, err_code: 10081, description: "consumer deliver subject forms a cycle" }],
        [{ sample_freq: "abc" }, sampling('strconv.Atoi: parsing "abc": invalid syntax')],
        [{ sample_freq: "5%%" }, sampling('strconv.Atoi: parsing "5%": invalid syntax')],
        [{ sample_freq: "99999999999999999999" }, sampling('strconv.Atoi: parsing "99999999999999999999": value out of range')],
        [{ sample_freq: "-5" }, sampling("<nil>")],
      ];
      for (const [extra, error] of cases) {
        const r = await createConsumer(name, { durable_name: "lim", ack_policy: "explicit", ...extra });
        expect.soft(r.error, JSON.stringify(extra)).toEqual(error);
      }
    });

    it("#10 an existing consumer keeps its policies: changing one is refused with nats-server's text (500 / 10012)", async () => {
      const { name } = await stream("cupd");
      const time = "2020-01-01T00:00:00Z";
      const cases: [Record<string, unknown>, Record<string, unknown>, string][] = [
        [{ deliver_policy: "all" }, { deliver_policy: "new" }, "deliver policy"],
        [{ deliver_policy: "by_start_sequence", opt_start_seq: 3 }, { deliver_policy: "by_start_sequence", opt_start_seq: 4 }, "start sequence"],
        [{ deliver_policy: "by_start_time", opt_start_time: time }, { deliver_policy: "by_start_time", opt_start_time: "2021-01-01T00:00:00Z" }, "start time"],
        [{ ack_policy: "explicit" }, { ack_policy: "all" }, "ack policy"],
        [{ replay_policy: "instant" }, { replay_policy: "original" }, "replay policy"],
        [{ deliver_subject: "cupd.hb", idle_heartbeat: SEC_NS }, { deliver_subject: "cupd.hb", idle_heartbeat: 2 * SEC_NS }, "heart beats"],
        [{ deliver_subject: "cupd.fc", idle_heartbeat: SEC_NS }, { deliver_subject: "cupd.fc", idle_heartbeat: SEC_NS, flow_control: true }, "flow control"],
        [{ max_waiting: 512 }, { max_waiting: 10 }, "max waiting"],
        // Pull to push shows up as a change of max_waiting (512 to none) first.
        [{}, { deliver_subject: "cupd.push" }, "max waiting"],
      ];
      let n = 0;
      for (const [before, after, what] of cases) {
        const durable_name = `u${++n}`;
        const created = await createConsumer(name, { durable_name, ack_policy: "explicit", ...before });
        expect.soft(created.error, JSON.stringify(before)).toBeUndefined();
        const r = await createConsumer(name, { durable_name, ack_policy: "explicit", ...before, ...after });
        expect.soft(r.error, JSON.stringify(after)).toEqual({ code: 500, err_code: 10012, description: `${what} can not be updated` });
      }
    });

    it("#10 a durable consumer's config repeats its name as `name`", async () => {
      const { name } = await stream("dname");
      const r = await createConsumer(name, { durable_name: "dur", ack_policy: "explicit" });
      expect(r.config).toMatchObject({ durable_name: "dur", name: "dur" });
    });

    it("#10 an existing consumer takes new limits, description and storage hints", async () => {
      const { name } = await stream("cupdok");
      expect((await createConsumer(name, { durable_name: "d", ack_policy: "explicit" })).error).toBeUndefined();
      const changed = {
        description: "now described",
        ack_wait: 5 * SEC_NS,
        max_deliver: 4,
        max_ack_pending: 10,
        headers_only: true,
        mem_storage: true,
        num_replicas: 1,
        max_batch: 4,
        max_expires: 5 * SEC_NS,
      };
      const r = await createConsumer(name, { durable_name: "d", ack_policy: "explicit", ...changed });
      expect(r.error).toBeUndefined();
      expect(r.config).toMatchObject(changed);
    });

    it("#10 a filter must lie within a stream subject or cover one; overlapping is not enough (400 / 10093)", async () => {
      const { name: name1, subj: s1 } = fresh("filt");
      expect((await createStream(name1, { subjects: [`${s1}.a.b`, `${s1}x.*`] })).error).toBeUndefined();
      const notSubset = { code: 400, err_code: 10093, description: "consumer filter subject is not a valid subset of the interest subjects" };
      const cases: [string, boolean][] = [
        [`${s1}.*.b`, true],
        [`${s1}.>`, true],
        [">", true],
        [`${s1}x.y`, true],
        [`${s1}x.>`, true],
        [`*.y`, false],
        [`${s1}.a.*.>`, false],
        [`${s1}`, false],
      ];
      for (const [filter, ok] of cases) {
        const r = await createConsumer(name1, { ack_policy: "explicit", filter_subject: filter });
        if (ok) expect.soft(r.error, filter).toBeUndefined();
        else expect.soft(r.error, filter).toEqual(notSubset);
      }
      const { name: name2, subj: s2 } = await stream("filt");
      for (const filter of ["*.*", `*.a.b`]) {
        expect.soft((await createConsumer(name2, { ack_policy: "explicit", filter_subject: filter })).error, filter).toEqual(notSubset);
      }
      expect((await createConsumer(name2, { ack_policy: "explicit", filter_subject: "*.>" })).error).toBeUndefined();
      expect((await createConsumer(name2, { ack_policy: "explicit", filter_subject: `${s2}.*` })).error).toBeUndefined();
    });

    it("#10 workqueue consumers: explicit acks, deliver all, one unfiltered or non-overlapping filters", async () => {
      const { name, subj } = await stream("wq", { retention: "workqueue" });
      const error = (err_code: number, description: string) => ({ code: 400, err_code, description });
      const notUnique = error(10100, "filtered consumer not unique on workqueue stream");
      const add = (durable_name: string, extra: Record<string, unknown> = {}) => createConsumer(name, { durable_name, ack_policy: "explicit", ...extra });
      expect((await add("first", { deliver_policy: "new" })).error).toEqual(error(10101, "consumer must be deliver all on workqueue stream"));
      expect((await add("acks", { ack_policy: "all" })).error).toEqual(error(10098, "workqueue stream requires explicit ack"));
      expect((await add("all")).error).toBeUndefined();
      // The same consumer again, or changed where it may change, is no second consumer.
      expect((await add("all")).error).toBeUndefined();
      expect((await add("all", { max_deliver: 3 })).error).toBeUndefined();
      expect((await add("second")).error).toEqual(error(10099, "multiple non-filtered consumers not allowed on workqueue stream"));
      expect((await add("filtered", { filter_subject: `${subj}.a` })).error).toEqual(notUnique);
      expect((await api(`CONSUMER.DELETE.${name}.all`, "")).error).toBeUndefined();
      expect((await add("a", { filter_subject: `${subj}.a` })).error).toBeUndefined();
      expect((await add("b", { filter_subject: `${subj}.b.>` })).error).toBeUndefined();
      expect((await add("star", { filter_subject: `${subj}.*` })).error).toEqual(notUnique);
      expect((await add("b2", { filter_subject: `${subj}.b.c` })).error).toEqual(notUnique);
      expect((await add("unfiltered")).error).toEqual(error(10099, "multiple non-filtered consumers not allowed on workqueue stream"));
      expect((await add("c", { filter_subject: `${subj}.c`, deliver_policy: "last" })).error).toEqual(error(10101, "consumer must be deliver all on workqueue stream"));
    });

    it("#10 ack none with max_ack_pending, negative max_deliver / max_ack_pending and a sample frequency are accepted and kept", async () => {
      const { name } = await stream("kept");
      const none = await createConsumer(name, { durable_name: "none", ack_policy: "none", max_ack_pending: 10 });
      expect(none.error).toBeUndefined();
      expect(none.config).toMatchObject({ ack_policy: "none", max_ack_pending: 10 });
      const negative = await createConsumer(name, { durable_name: "neg", ack_policy: "explicit", max_deliver: -5, max_ack_pending: -5, sample_freq: "50%" });
      expect(negative.error).toBeUndefined();
      expect(negative.config).toMatchObject({ max_deliver: -5, max_ack_pending: -5, sample_freq: "50%" });
    });
  });

  describe("#9 republish", () => {
    /** Collects what arrives on a subject until `n` messages are in. */
    async function collect(subject: string) {
      const c = await js.nc();
      const got: Msg[] = [];
      c.subscribe(subject, {
        callback: (_err, m) => {
          got.push(m);
        },
      });
      await c.flush();
      return { got, until: (n: number) => waitFor(`${n} republished messages on ${subject}`, () => got.length >= n) };
    }

    it("stored messages matching src go to the mapped dest with Nats-Stream/Subject/Sequence/Last-Sequence", async () => {
      const { name, subj } = fresh("rp");
      const dest = `out${seq}`;
      const r = await createStream(name, { subjects: [`${subj}.>`], republish: { src: `${subj}.*`, dest: `${dest}.$1` } });
      expect(r.error).toBeUndefined();
      expect(r.config).toMatchObject({ republish: { src: `${subj}.*`, dest: `${dest}.$1` } });
      const out = await collect(`${dest}.>`);
      const c = await js.nc();
      const jsc = jetstream(c);
      await jsc.publish(`${subj}.a`, "one");
      const h = headers();
      h.set("X-App", "kept");
      await jsc.publish(`${subj}.b`, "two", { headers: h });
      await jsc.publish(`${subj}.not.matched`, "stored only");
      await jsc.publish(`${subj}.a`, "three");
      await out.until(3);
      await c.flush();
      expect(out.got.map((m) => [m.subject, m.string()])).toEqual([
        [`${dest}.a`, "one"],
        [`${dest}.b`, "two"],
        [`${dest}.a`, "three"],
      ]);
      expect(headerPairs(out.got[0].headers)).toEqual([
        ["Nats-Stream", name],
        ["Nats-Subject", `${subj}.a`],
        ["Nats-Sequence", "1"],
        ["Nats-Last-Sequence", "0"],
      ]);
      // The publisher's headers come first; the last sequence is the last one on the same subject.
      expect(headerPairs(out.got[1].headers)).toEqual([
        ["X-App", "kept"],
        ["Nats-Stream", name],
        ["Nats-Subject", `${subj}.b`],
        ["Nats-Sequence", "2"],
        ["Nats-Last-Sequence", "0"],
      ]);
      expect(headerPairs(out.got[2].headers)).toContainEqual(["Nats-Last-Sequence", "1"]);
      expect(headerPairs(out.got[2].headers)).toContainEqual(["Nats-Sequence", "4"]);
    });

    it("headers_only sends an empty body with Nats-Msg-Size; {{wildcard(N)}} and a trailing > map tokens", async () => {
      const { name, subj } = fresh("rpho");
      const dest = `outho${seq}`;
      const republish = { src: `${subj}.*.>`, dest: `${dest}.{{wildcard(1)}}.x.>`, headers_only: true };
      expect((await createStream(name, { subjects: [`${subj}.>`], republish })).error).toBeUndefined();
      const out = await collect(`${dest}.>`);
      const c = await js.nc();
      await jetstream(c).publish(`${subj}.k.deep.er`, "12345");
      await out.until(1);
      expect(out.got[0].subject).toBe(`${dest}.k.x.deep.er`);
      expect(out.got[0].data.length).toBe(0);
      expect(headerPairs(out.got[0].headers)).toEqual([
        ["Nats-Stream", name],
        ["Nats-Subject", `${subj}.k.deep.er`],
        ["Nats-Sequence", "1"],
        ["Nats-Last-Sequence", "0"],
        ["Nats-Msg-Size", "5"],
      ]);
    });

    it("mapping functions: partition, splitFromLeft, split and sliceFromRight", async () => {
      const { name, subj } = fresh("rpfn");
      const dest = `outfn${seq}`;
      const republish = { src: `${subj}.*.*`, dest: `${dest}.{{partition(5,1,2)}}.{{SplitFromLeft(1,2)}}.{{split(2,-)}}.{{SliceFromRight(1,3)}}` };
      expect((await createStream(name, { subjects: [`${subj}.>`], republish })).error).toBeUndefined();
      const out = await collect(`${dest}.>`);
      const jsc = jetstream(await js.nc());
      await jsc.publish(`${subj}.abcdefg.a-b--c`, "1");
      await jsc.publish(`${subj}.xy.-q-`, "2");
      await out.until(2);
      expect(out.got.map((m) => m.subject)).toEqual([`${dest}.0.ab.cdefg.a.b.c.a.bcd.efg`, `${dest}.4.xy.q.xy`]);
    });

    it("two streams republishing into each other keep going round, and the server keeps answering", async () => {
      const { name: a, subj: sa } = fresh("rploopa");
      const { name: b, subj: sb } = fresh("rploopb");
      const limits = { storage: "memory", max_msgs: 1000 };
      expect((await createStream(a, { subjects: [`${sa}.>`], republish: { src: `${sa}.>`, dest: `${sb}.>` }, ...limits })).error).toBeUndefined();
      expect((await createStream(b, { subjects: [`${sb}.>`], republish: { src: `${sb}.>`, dest: `${sa}.>` }, ...limits })).error).toBeUndefined();
      const c = await js.nc();
      c.publish(`${sa}.x`, "round");
      const lastSeq = async () => ((await api(`STREAM.INFO.${a}`, "")).state as { last_seq: number }).last_seq;
      await waitFor("the message to go round many times", async () => (await lastSeq()) > 100);
      expect((await api(`STREAM.DELETE.${a}`, "")).error).toBeUndefined();
      expect((await api(`STREAM.DELETE.${b}`, "")).error).toBeUndefined();
      expect((await api("INFO", "")).error).toBeUndefined();
    });

    it("src defaults to every subject (>)", async () => {
      const { name, subj } = fresh("rpall");
      const r = await createStream(name, { subjects: [`${subj}.>`], republish: { dest: `all${seq}.>` } });
      expect(r.error).toBeUndefined();
      expect(r.config).toMatchObject({ republish: { src: ">", dest: `all${seq}.>` } });
    });

    it("a bad source, a destination in the stream's own subjects or an invalid mapping is refused (500 / 10052)", async () => {
      const { name, subj } = fresh("rpbad");
      const cases: [Record<string, unknown>, string][] = [
        [{ src: "elsewhere.>", dest: "rpbad.>" }, "stream configuration for republish source is not valid subset of subjects"],
        [{ src: `${subj}..*`, dest: "rpbad.$1" }, "stream configuration for republish source is not valid subset of subjects"],
        [{ src: `${subj}.>`, dest: `${subj}.again.>` }, "stream configuration for republish destination forms a cycle"],
        [{ src: `${subj}.*`, dest: "rpbad.*" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.*`, dest: "rpbad.$2" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.*.*`, dest: "rpbad.$1" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.>`, dest: "rpbad.fixed" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.*`, dest: "rpbad.$1.>" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.*`, dest: "" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.*`, dest: "rpbad.{{bogus(1)}}" }, "stream configuration for republish not valid"],
        [{ src: `${subj}.*`, dest: "rpbad.{{WILDCARD(1)}}" }, "stream configuration for republish not valid"],
        // partition() is one mapped token however many wildcards it hashes.
        [{ src: `${subj}.*.*`, dest: "rpbad.{{partition(3,1,2)}}" }, "stream configuration for republish not valid"],
      ];
      for (const [republish, text] of cases) {
        const r = await createStream(name, { subjects: [`${subj}.>`], republish });
        expect.soft(r.error, JSON.stringify(republish)).toEqual(streamConfigError(text));
      }
      await expectNoStream(name);
    });

    it("an update can not add, change or drop republish", async () => {
      const { name, subj } = fresh("rpupd");
      const republish = { src: `${subj}.>`, dest: `moved${seq}.>` };
      expect((await createStream(name, { subjects: [`${subj}.>`], republish })).error).toBeUndefined();
      const refused = streamConfigError("stream configuration update can not change RePublish");
      expect((await updateStream(name, { subjects: [`${subj}.>`], republish: { ...republish, dest: `other${seq}.>` } })).error).toEqual(refused);
      expect((await updateStream(name, { subjects: [`${subj}.>`] })).error).toEqual(refused);
      const { name: plain, subj: plainSubj } = await stream("rpadd");
      expect((await updateStream(plain, { subjects: [`${plainSubj}.>`], republish: { dest: `added${seq}.>` } })).error).toEqual(refused);
    });

    it("a KV bucket's republished puts reach a plain subscriber, and a watcher of a bucket that stores them", async () => {
      const n = ++seq;
      const c = await js.nc();
      const kvm = new Kvm(c);
      // Bucket B stores what bucket A republishes: A's keys show up in B.
      const target = await kvm.create(`target${n}`);
      const watcher = await target.watch();
      const watched: string[] = [];
      void (async () => {
        for await (const e of watcher) watched.push(`${e.key}=${e.string()}`);
      })();
      const plain = await collect(`$KV.target${n}.>`);
      const source = await kvm.create(`source${n}`, { republish: { src: `$KV.source${n}.>`, dest: `$KV.target${n}.>` } });
      await source.put("k1", "v1");
      await source.put("k2", "v2");
      await plain.until(2);
      expect(plain.got.map((m) => [m.subject, m.string(), m.headers?.get("Nats-Stream")])).toEqual([
        [`$KV.target${n}.k1`, "v1", `KV_source${n}`],
        [`$KV.target${n}.k2`, "v2", `KV_source${n}`],
      ]);
      await waitFor("the watcher to see both keys", () => watched.length >= 2);
      watcher.stop();
      expect(watched).toEqual(["k1=v1", "k2=v2"]);
      expect((await target.get("k2"))?.string()).toBe("v2");
    });
  });
});

// The bundled broker's own upgrade path: durables saved before their config carried `name`.
describeEachServer(
  "JetStream configuration conformance, saved state",
  (kind: ServerKind) => {
    const js = useJetStreamServer(kind);

    it("a durable saved without `name` comes back with it, and the same config again is no change", async () => {
      const config = { durable_name: "dur", ack_policy: "explicit" };
      const createDurable = async () => {
        const c = await js.nc();
        const m = await c.request("$JS.API.CONSUMER.CREATE.OLD.dur", JSON.stringify({ stream_name: "OLD", config }), { timeout: 5000 });
        return m.json<ApiAnswer>();
      };
      const c = await js.nc();
      await c.request("$JS.API.STREAM.CREATE.OLD", JSON.stringify({ name: "OLD", subjects: ["old.>"] }), { timeout: 5000 });
      expect((await createDurable()).error).toBeUndefined();
      await js.server().restart(); // the consumer's state is written on the way down
      const file = path.join(js.server().dataDir as string, "jetstream", "OLD", "consumers", "dur.json");
      const saved = JSON.parse(readFileSync(file, "utf8")) as { config: Record<string, unknown> };
      delete saved.config.name;
      writeFileSync(file, JSON.stringify(saved));
      await js.server().restart();
      const again = await createDurable();
      expect(again.error).toBeUndefined();
      expect(again.config).toMatchObject({ durable_name: "dur", name: "dur" });
    });
  },
  ["bundled"],
);
