/**
 * Derives the TypeScript types from the `.avsc` files, which stay the source
 * of truth. `npm run schemas -- gen` writes `schemas/types.gen.ts`; a unit
 * test regenerates in memory and fails when the committed file has drifted.
 *
 * The one liberty taken: a union of records (the event payload) becomes a
 * discriminated union on `type`, the record's short name, which is how the
 * codec hands events to code (Avro itself wraps such unions by full name).
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../core/config.ts';

type Schema = string | Schema[] | { type: string | Schema; [k: string]: unknown };

interface Named {
  name: string;
  ts: string;
}

export function generateTypes(rootSchema: Schema, source: string): string {
  const named: Named[] = [];
  const seen = new Set<string>();

  const shortName = (n: string) => n.split('.').pop()!;

  const typeOf = (s: Schema): string => {
    if (typeof s === 'string') {
      switch (s) {
        case 'null':
          return 'null';
        case 'boolean':
          return 'boolean';
        case 'int':
        case 'long':
        case 'float':
        case 'double':
          return 'number';
        case 'bytes':
          return 'Buffer';
        case 'string':
          return 'string';
        default:
          return shortName(s); // a reference to a named type
      }
    }
    if (Array.isArray(s)) {
      const records = s.filter((b) => typeof b === 'object' && !Array.isArray(b) && b.type === 'record');
      if (records.length > 1) {
        // Discriminated union of records.
        return s
          .map((b) => {
            const t = typeOf(b);
            return typeof b === 'object' && !Array.isArray(b) && b.type === 'record' ? `({ type: '${t}' } & ${t})` : t;
          })
          .join(' | ');
      }
      return s.map(typeOf).join(' | ');
    }
    const t = s.type;
    if (typeof t !== 'string') return typeOf(t);
    switch (t) {
      case 'record': {
        const name = shortName(s.name as string);
        if (!seen.has(name)) {
          seen.add(name);
          const fields = (s.fields as { name: string; type: Schema; doc?: string }[]).map((f) => {
            const doc = f.doc ? `  /** ${f.doc} */\n` : '';
            return `${doc}  ${f.name}: ${typeOf(f.type)};`;
          });
          const doc = s.doc ? `/** ${s.doc as string} */\n` : '';
          named.push({ name, ts: `${doc}export interface ${name} {\n${fields.join('\n')}\n}` });
        }
        return name;
      }
      case 'enum': {
        const name = shortName(s.name as string);
        if (!seen.has(name)) {
          seen.add(name);
          const symbols = s.symbols as string[];
          named.push({
            name,
            ts: `export type ${name} = ${symbols.map((x) => `'${x}'`).join(' | ')};\nexport const ${name}Values = [${symbols.map((x) => `'${x}'`).join(', ')}] as const;`,
          });
        }
        return name;
      }
      case 'array':
        return `Array<${typeOf(s.items as Schema)}>`;
      case 'map':
        return `Record<string, ${typeOf(s.values as Schema)}>`;
      case 'fixed':
        return 'Buffer';
      default:
        return typeOf(t); // primitive with attributes (e.g. a logical type)
    }
  };

  typeOf(rootSchema);
  return [
    `// Generated from ${source} by \`npm run schemas -- gen\`. Do not edit: change the .avsc and regenerate.`,
    '/* eslint-disable */',
    '',
    ...named.map((n) => n.ts + '\n'),
  ].join('\n');
}

export const SCHEMA_FILE = path.join(REPO_ROOT, 'schemas', 'room-event.avsc');
export const TYPES_FILE = path.join(REPO_ROOT, 'schemas', 'types.gen.ts');

export function readSchema(file = SCHEMA_FILE): Schema {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Schema;
}

export function expectedTypesFile(): string {
  return generateTypes(readSchema(), 'schemas/room-event.avsc');
}
