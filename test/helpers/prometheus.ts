// A strict parser of the Prometheus text exposition format (0.0.4), for tests of /metrics: it throws on
// anything a Prometheus server would refuse or misread (a bad name, label or value, a sample before its
// TYPE, a family split in two, a duplicate series, a histogram whose buckets are not cumulative or whose
// _count is not its +Inf bucket), and gives the families with their samples.

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help?: string;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`line ${line}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** `{a="x",b="y"}` from position 0 of `text`; returns the labels and where the block ended. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = 1;
  const fail = (why: string): never => {
    throw new Error(`line ${line}: ${why} in ${JSON.stringify(text)}`);
  };
  while (text[i] !== "}") {
    const eq = text.indexOf("=", i);
    if (eq < 0) fail("a label without '='");
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(`bad label name ${JSON.stringify(name)}`);
    if (name in labels) fail(`label ${name} twice`);
    if (text[eq + 1] !== '"') fail("an unquoted label value");
    let value = "";
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      if (c === undefined) fail("an unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const e = text[j + 1];
        if (e === "\\") value += "\\";
        else if (e === '"') value += '"';
        else if (e === "n") value += "\n";
        else fail(`a bad escape \\${e}`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail("labels not separated by ','");
  }
  return { labels, end: i + 1 };
}

/** The family a sample belongs to: a histogram's _bucket, _sum and _count lines are its own. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const f = families.get(name.slice(0, -suffix.length));
    if (f && (f.type === "histogram" || (f.type === "summary" && suffix !== "_bucket"))) return f;
  }
  return families.get(name);
}

function seriesKey(s: PromSample): string {
  return `${s.name}{${Object.entries(s.labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(",")}}`;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: { le: number; value: number }[]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)));
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      entry.buckets.push({ le: parseValue(le, 0), value: s.value });
    } else if (s.name.endsWith("_count")) entry.count = s.value;
    else if (s.name.endsWith("_sum")) entry.sum = s.value;
    else throw new Error(`${f.name}: sample ${s.name} is not a bucket, sum or count`);
  }
  for (const [key, e] of series) {
    const where = `${f.name}${key}`;
    if (e.count === undefined || e.sum === undefined) throw new Error(`${where}: no _count or _sum`);
    for (let i = 1; i < e.buckets.length; i++) {
      if (!(e.buckets[i].le > e.buckets[i - 1].le)) throw new Error(`${where}: bucket bounds not increasing`);
      if (e.buckets[i].value < e.buckets[i - 1].value) throw new Error(`${where}: buckets not cumulative`);
    }
    const last = e.buckets[e.buckets.length - 1];
    if (!last || last.le !== Infinity) throw new Error(`${where}: no le="+Inf" bucket`);
    if (last.value !== e.count) throw new Error(`${where}: _count ${e.count} is not the +Inf bucket ${last.value}`);
  }
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const finished = new Set<string>();
  let current: Family | undefined;
  const lines = text.split("\n");
  if (lines.pop() !== "") throw new Error("the text does not end with a newline");
  lines.forEach((raw, index) => {
    const n = index + 1;
    if (raw.trim() === "") return;
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`line ${n}: bad metric name ${JSON.stringify(name)}`);
      if (finished.has(name)) throw new Error(`line ${n}: family ${name} appears twice`);
      let f = families.get(name);
      if (kind === "TYPE") {
        if (!TYPES.has(rest as MetricType)) throw new Error(`line ${n}: bad type ${JSON.stringify(rest)}`);
        if (f?.samples.length) throw new Error(`line ${n}: TYPE of ${name} after its samples`);
        if (f && f.type !== "untyped") throw new Error(`line ${n}: a second TYPE for ${name}`);
      }
      if (!f) {
        f = { name, type: "untyped", samples: [] };
        families.set(name, f);
      }
      if (current && current !== f) finished.add(current.name);
      current = f;
      if (kind === "TYPE") f.type = rest as MetricType;
      else {
        if (f.help !== undefined) throw new Error(`line ${n}: a second HELP for ${name}`);
        f.help = rest;
      }
      return;
    }
    const nameEnd = raw.search(/[{ ]/);
    if (nameEnd <= 0) throw new Error(`line ${n}: not a sample: ${JSON.stringify(raw)}`);
    const name = raw.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) throw new Error(`line ${n}: bad metric name ${JSON.stringify(name)}`);
    let rest = raw.slice(nameEnd);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) {
      const parsed = parseLabels(rest, n);
      labels = parsed.labels;
      rest = rest.slice(parsed.end);
    }
    const fields = rest.split(" ");
    if (fields[0] !== "" || fields.length < 2 || fields.length > 3) throw new Error(`line ${n}: expected ' value [timestamp]' in ${JSON.stringify(raw)}`);
    const value = parseValue(fields[1], n);
    if (fields[2] !== undefined && !/^-?\d+$/.test(fields[2])) throw new Error(`line ${n}: bad timestamp`);
    let f = familyOf(name, families);
    if (!f) {
      f = { name, type: "untyped", samples: [] };
      families.set(name, f);
    }
    if (finished.has(f.name)) throw new Error(`line ${n}: samples of ${f.name} are not together`);
    if (current && current !== f) finished.add(current.name);
    current = f;
    if (f.type === "counter" && !(value >= 0)) throw new Error(`line ${n}: counter ${name} is ${value}`);
    const sample = { name, labels, value };
    const key = seriesKey(sample);
    if (seen.has(key)) throw new Error(`line ${n}: series ${key} twice`);
    seen.add(key);
    f.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

/** The value of the one sample named `name` whose labels include `labels`; throws when none or several match. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const matches = [...families.values()]
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name}${JSON.stringify(labels)}`);
  return matches[0].value;
}

/** GET a /metrics URL and parse it, checking the content type Prometheus expects. */
export async function scrape(url: string): Promise<Map<string, Family>> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain") || !type.includes("version=0.0.4")) throw new Error(`GET ${url}: content type ${type}`);
  return parsePrometheusText(await res.text());
}
