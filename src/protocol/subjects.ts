// Subject facts the node needs beyond validation: whether two subscription subjects can both match one
// subject (so two subscribers would compete for the same messages).

/** True when some literal subject matches both subscription subjects (`*` one token, `>` one or more at the end). */
export function subjectsOverlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let k = 0; ; k++) {
    const endX = k >= x.length;
    const endY = k >= y.length;
    if (endX || endY) return endX && endY;
    if (x[k] === ">") return true;
    if (y[k] === ">") return true;
    if (x[k] !== "*" && y[k] !== "*" && x[k] !== y[k]) return false;
  }
}
