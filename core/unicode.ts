/**
 * Well-formed Unicode, checked at every boundary text crosses: the gateway's
 * request bodies and the event codec. A JavaScript string may hold a lone
 * surrogate (JSON's `"\ud800"` makes one); such a string has no UTF-8 form,
 * and Avro would write it as the bytes of the surrogate itself (ED A0 80),
 * which strict UTF-8 decoders (Python's among them) refuse and lenient ones
 * rewrite. So it is refused where it enters, and never logged.
 */

// Node 20 has them (ES2024); the compiler's target library (ES2022) does not list them yet.
declare global {
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}

/**
 * The path (`/a/0/b`) of the first string, or object key, in `value` that is
 * not well-formed Unicode; undefined when every one is. Iterative, so a deeply
 * nested body cannot overflow the stack.
 */
export function illFormedPath(value: unknown): string | undefined {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (!v.isWellFormed()) return path || '/';
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}/${i}`]);
    } else if (typeof v === 'object' && v !== null && !Buffer.isBuffer(v)) {
      const entries = Object.entries(v);
      for (const [k] of entries) if (!k.isWellFormed()) return `${path}/${k.toWellFormed()}`;
      for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i]![1], `${path}/${entries[i]![0]}`]);
    }
  }
  return undefined;
}
