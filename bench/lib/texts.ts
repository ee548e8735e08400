/**
 * Comment texts for the load generators: real chat lines from
 * `../shared/data/*.jsonl.gz` when that folder is there (read in place, never
 * copied), otherwise generated ones of similar length and script mix.
 */
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { createGunzip } from 'node:zlib';
import { REPO_ROOT } from '../../core/config.ts';

export const DATA_DIR = path.resolve(REPO_ROOT, '..', 'shared', 'data');
const FILES = ['bilibili_asoul_live.jsonl.gz', 'niconico_anime_2022summer.jsonl.gz'];

export interface Texts {
  texts: string[];
  source: string;
}

/** Room of the real logs → texts are truncated to this many code points (the gateway takes 200, the tag needs a few). */
const MAX_CP = 150;

async function readLog(file: string, limit: number): Promise<string[]> {
  const out: string[] = [];
  const input = createReadStream(file).pipe(createGunzip());
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const line of rl) {
    try {
      const text = (JSON.parse(line) as { text?: string }).text?.trim();
      if (text) out.push([...text].slice(0, MAX_CP).join(''));
    } catch {
      // skip a malformed line
    }
    if (out.length >= limit) break;
  }
  rl.close();
  input.destroy();
  return out;
}

const SYLLABLES = ['哈哈哈', '草', '好可爱', '来了', '888', 'awsl', 'www', '前方高能', '？？？', 'lol', 'nice', 'gg', '泪目', '上手', 'かわいい', 'きたー', '弹幕护体', 'yyds'];

/** Deterministic made-up danmaku (when the real logs are absent). */
export function generatedTexts(n: number): string[] {
  let s = 42;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const words = 1 + Math.floor(rnd() * 4);
    out.push(Array.from({ length: words }, () => SYLLABLES[Math.floor(rnd() * SYLLABLES.length)]!).join(rnd() < 0.3 ? ' ' : ''));
  }
  return out;
}

export async function loadTexts(limit = 20_000): Promise<Texts> {
  const present = FILES.map((f) => path.join(DATA_DIR, f)).filter((f) => existsSync(f));
  if (present.length === 0) return { texts: generatedTexts(limit), source: 'generated (../shared/data absent)' };
  const per = Math.ceil(limit / present.length);
  const texts: string[] = [];
  for (const f of present) texts.push(...(await readLog(f, per)));
  if (texts.length === 0) return { texts: generatedTexts(limit), source: 'generated (real logs empty)' };
  return { texts, source: `real chat logs: ${present.map((f) => path.basename(f)).join(', ')}` };
}

/**
 * A text carrying the writer's send time, so every receiver can compute the
 * end-to-end latency on the same clock: `~<seq>~<send µs>~ <text>`.
 */
export function tagText(seq: number, sendMs: number, text: string): string {
  return `~${seq}~${Math.round(sendMs * 1000)}~ ${text}`;
}

const TAG = /^~(\d+)~(\d+)~/;
export function parseTag(text: string): { seq: number; sendMs: number } | undefined {
  const m = TAG.exec(text);
  return m ? { seq: Number(m[1]), sendMs: Number(m[2]) / 1000 } : undefined;
}
