/**
 * The import graph keeps the layers: core → schemas → topics → pipelines →
 * gateway | archive → services (the composition root) → bench | fuzz | chaos | soak. Parsed from
 * the sources (static and dynamic imports, specs included), so a beam that
 * runs the wrong way fails here, not in review.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';

const FOLDERS = ['core', 'schemas', 'topics', 'pipelines', 'gateway', 'archive', 'infra', 'services', 'bench', 'fuzz', 'chaos', 'soak', 'test'] as const;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

interface Edge {
  from: string;
  to: string;
}

/** Every relative import of the repository's TypeScript files, as repo-relative paths. */
function importGraph(): Edge[] {
  const edges: Edge[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;
  for (const folder of FOLDERS) {
    const dir = path.join(REPO_ROOT, folder);
    if (!fs.existsSync(dir)) continue;
    for (const file of sources(dir)) {
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(re)) {
        const to = path.relative(REPO_ROOT, path.resolve(path.dirname(file), m[1]!));
        edges.push({ from: path.relative(REPO_ROOT, file), to });
      }
    }
  }
  return edges;
}

const top = (p: string) => p.split(path.sep)[0]!;
const isSpec = (p: string) => /\.spec\.ts$/.test(p);
const edges = importGraph();
const violations = (rule: (e: Edge) => boolean) => edges.filter(rule).map((e) => `${e.from} → ${e.to}`);

describe('layers', () => {
  it('reads a graph that is not empty', () => {
    expect(edges.length).toBeGreaterThan(200);
    expect(edges.some((e) => e.from === 'services/root.ts' && e.to === 'gateway/service.ts')).toBe(true);
  });

  it('archive/ and gateway/ never import each other (they meet through an interface the root wires)', () => {
    expect(violations((e) => (top(e.from) === 'archive' && top(e.to) === 'gateway') || (top(e.from) === 'gateway' && top(e.to) === 'archive'))).toEqual([]);
  });

  it('infra/ imports nothing of the product above the config (no gateway, pipelines, archive, services)', () => {
    expect(violations((e) => top(e.from) === 'infra' && ['gateway', 'pipelines', 'archive', 'services', 'bench'].includes(top(e.to)))).toEqual([]);
  });

  it('nothing in gateway/ imports the runner (naming lives in pipelines/naming.ts)', () => {
    expect(violations((e) => top(e.from) === 'gateway' && e.to === path.join('pipelines', 'runner.ts'))).toEqual([]);
  });

  it('no module of gateway/ reaches the runner or the Kafka consumer through any chain of imports (naming and lag are importable alone)', () => {
    const next = new Map<string, string[]>();
    for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
    const banned = new Set([path.join('pipelines', 'runner.ts'), path.join('topics', 'consumer.ts')]);
    const paths: string[] = [];
    for (const start of new Set(edges.map((e) => e.from))) {
      if (top(start) !== 'gateway' || isSpec(start)) continue;
      // Breadth-first, remembering how each module was reached, to name the whole chain.
      const via = new Map<string, string | null>([[start, null]]);
      const queue = [start];
      while (queue.length > 0) {
        const at = queue.shift()!;
        if (banned.has(at)) {
          const chain: string[] = [];
          for (let m: string | null | undefined = at; m; m = via.get(m)) chain.unshift(m);
          paths.push(chain.join(' → '));
          break;
        }
        for (const to of next.get(at) ?? []) if (!via.has(to)) (via.set(to, at), queue.push(to));
      }
    }
    expect(paths).toEqual([]);
  });

  it('core/ depends on nothing of the product (its specs may use the test helpers)', () => {
    expect(violations((e) => top(e.from) === 'core' && top(e.to) !== 'core' && !(isSpec(e.from) && top(e.to) === 'test'))).toEqual([]);
  });

  it('only the root, the tests, the benchmarks and the fuzzer import services/ (int and e2e specs run the system through it)', () => {
    expect(violations((e) => top(e.to) === 'services' && !['services', 'test', 'bench', 'fuzz', 'chaos', 'soak'].includes(top(e.from)) && !isSpec(e.from))).toEqual([]);
  });

  it('the product never imports the benchmarks, the fuzzer or the test helpers (specs may)', () => {
    expect(violations((e) => !isSpec(e.from) && !['bench', 'fuzz', 'chaos', 'soak', 'test'].includes(top(e.from)) && ['bench', 'fuzz', 'chaos', 'soak', 'test'].includes(top(e.to)))).toEqual([]);
  });

  it('the benchmarks and the fuzzer never import each other (both drive the system from outside)', () => {
    expect(violations((e) => (top(e.from) === 'bench' && top(e.to) === 'fuzz') || (top(e.from) === 'fuzz' && top(e.to) === 'bench'))).toEqual([]);
  });
});
