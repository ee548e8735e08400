/**
 * `npm run moderation -- eval`: how well each moderation stage does.
 *
 * - Quality on a hand-labelled set (fixtures/labelled.jsonl): precision and
 *   recall of the rules, of the model, and of both combined (a comment is
 *   flagged by the combination when either stage flags it).
 * - The share of real chat each stage flags (../shared/data, when present:
 *   read in place, never copied). Almost all of it is ordinary chat, so this
 *   share is mostly false positives: the lower the better.
 * - The model's cost: start-up, and per-batch latency of the model call.
 *
 * What "flagged" means per stage:
 * - rules: `judge()` with the configured settings and the word list, each
 *   comment on its own (no user history): removed or held by the content
 *   rules (word list, links, character runs). Repeats and floods depend on
 *   who posts how often, not on the text; on real chat they are reported on
 *   a line of their own, with per-user histories;
 * - model: a score at or above MODERATION_MODEL_THRESHOLD (what the stage
 *   removes or holds; the lower "record" scores only write a ModerationDecided
 *   with verdict allow, which removes nothing);
 * - combined: either.
 *
 * The last line is exactly
 *   moderation eval: precision P, recall R, flagged on real chat F %
 * for the combined stage: P and R as fractions in 0..1 with two decimals, F a
 * percentage with two decimals of both files' comments together ("n/a" when
 * the logs are absent).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import type { Config } from '../../core/config.ts';
import { ensureModelVenv } from './model/venv.ts';
import { ModelScorer } from './model/scorer.ts';
import { defaultModerationSettings, judge, type ModerationSettings, type UserHistory, type WordMatcher } from './rules.ts';

export interface Labelled {
  text: string;
  lang: string;
  label: 'abusive' | 'clean';
}

export const DEFAULT_LABELLED_PATH = fileURLToPath(new URL('./fixtures/labelled.jsonl', import.meta.url));
export const CHAT_LOGS = ['bilibili_asoul_live.jsonl.gz', 'niconico_anime_2022summer.jsonl.gz'] as const;

export function parseLabelled(text: string, source = 'labelled set'): Labelled[] {
  return text
    .split('\n')
    .map((l, i) => [l.trim(), i + 1] as const)
    .filter(([l]) => l !== '')
    .map(([l, n]) => {
      const r = JSON.parse(l) as Partial<Labelled>;
      if (typeof r.text !== 'string' || (r.label !== 'abusive' && r.label !== 'clean')) throw new Error(`${source}:${n}: needs "text" and "label" (abusive|clean)`);
      return { text: r.text, lang: r.lang ?? '?', label: r.label };
    });
}

export interface Confusion {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  /** tp / (tp + fp); 0 when nothing was flagged. */
  precision: number;
  /** tp / (tp + fn); 0 when nothing is abusive. */
  recall: number;
}

export function confusion(items: readonly Labelled[], flagged: readonly boolean[]): Confusion {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  items.forEach((it, i) => {
    const bad = it.label === 'abusive';
    if (flagged[i]) bad ? tp++ : fp++;
    else bad ? fn++ : tn++;
  });
  return { tp, fp, fn, tn, precision: tp + fp === 0 ? 0 : tp / (tp + fp), recall: tp + fn === 0 ? 0 : tp / (tp + fn) };
}

/** The eval's last line (see the file's doc for the units). */
export function evalLine(precision: number, recall: number, flaggedPct: number | undefined): string {
  return `moderation eval: precision ${precision.toFixed(2)}, recall ${recall.toFixed(2)}, flagged on real chat ${flaggedPct === undefined ? 'n/a' : flaggedPct.toFixed(2)} %`;
}

/** The rule settings the moderation processor runs with (as pipelines/service.ts derives them). */
export function settingsFrom(cfg: Config): ModerationSettings {
  const m = cfg.moderation;
  return {
    ...defaultModerationSettings,
    maxCharRun: m.maxCharRun,
    repeatMax: m.repeatMax,
    floodMax: m.floodMax,
    offensesToMute: m.offensesToMute,
    muteMs: m.muteSec * 1000,
    muteKind: m.muteKind,
    holdLinks: m.holdLinks,
  };
}

/** The content rules on one comment alone: the deciding rule when it is removed or held. */
export function judgeAlone(text: string, words: WordMatcher, s: ModerationSettings): string | undefined {
  const j = judge({ eventId: 'eval', userId: 'eval', role: 'viewer', text, occurredAt: 0 }, undefined, words, s).judgement;
  return j.verdict === 'allow' ? undefined : j.rule;
}

export interface ChatLine {
  room: string;
  user: string | null;
  text: string;
  /** Posting time (ms) or, without one, the offset in the stream. */
  at: number;
}

export async function readChatLog(file: string): Promise<ChatLine[]> {
  const out: ChatLine[] = [];
  const lines = createInterface({ input: fs.createReadStream(file).pipe(zlib.createGunzip()), crlfDelay: Infinity });
  for await (const l of lines) {
    if (!l) continue;
    const r = JSON.parse(l) as { room: string; user: string | null; text: string; ts: number | null; offset_ms: number };
    out.push({ room: r.room, user: r.user, text: r.text ?? '', at: r.ts ?? r.offset_ms });
  }
  return out;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Relative to the working directory when inside it. */
const shortPath = (p: string) => (path.relative(process.cwd(), p).startsWith('..') ? p : path.relative(process.cwd(), p));
const pct = (n: number, of: number) => (of === 0 ? 0 : (100 * n) / of);
const f2 = (x: number) => x.toFixed(2);
const pad = (s: string | number, n: number) => String(s).padStart(n);
const padEnd = (s: string | number, n: number) => String(s).padEnd(n);

export interface EvalOptions {
  cfg: Config;
  words: WordMatcher;
  /** How many entries the list has and where it is from, for the header. */
  wordsLabel: string;
  labelledPath: string;
  /** Folder of the real chat logs; missing files are reported and skipped. */
  dataDir: string | undefined;
  /** Run the model stage (default true). */
  model?: boolean;
  /** List every mistake on the labelled set. */
  mistakes?: boolean;
  out?: (line: string) => void;
  log?: (line: string) => void;
}

export interface EvalResult {
  combined: Confusion;
  rules: Confusion;
  model?: Confusion;
  /** Combined share of real chat flagged, percent; undefined without logs. */
  flaggedPct: number | undefined;
  line: string;
}

type Stage = 'rules' | 'model' | 'combined';

export async function runEval(o: EvalOptions): Promise<EvalResult> {
  const out = o.out ?? ((l: string) => console.log(l));
  const log = o.log ?? ((l: string) => console.error(l));
  const { cfg } = o;
  const settings = settingsFrom(cfg);
  const threshold = cfg.moderation.model.threshold;
  const items = parseLabelled(fs.readFileSync(o.labelledPath, 'utf8'), o.labelledPath);

  // --- the model, started once --------------------------------------------------------
  let scorer: ModelScorer | undefined;
  let venvMs = 0;
  if (o.model !== false) {
    const t0 = performance.now();
    const python = await ensureModelVenv(cfg, log);
    venvMs = performance.now() - t0;
    scorer = await ModelScorer.start(python);
  }
  try {
    const langs = [...new Set(items.map((i) => i.lang))];
    const count = (f: (i: Labelled) => boolean) => items.filter(f).length;
    out('moderation eval');
    out(`labelled set: ${shortPath(o.labelledPath)}: ${items.length} comments (${langs.map((l) => `${l} ${count((i) => i.lang === l)}`).join(', ')}; ${count((i) => i.label === 'abusive')} abusive, ${count((i) => i.label === 'clean')} clean)`);
    out(`rules: ${o.wordsLabel}; char runs > ${settings.maxCharRun}, links ${settings.holdLinks ? 'held' : 'removed'}`);
    if (scorer) {
      out(`model: ${scorer.model}, flags a score >= ${threshold} (${cfg.moderation.model.action}); venv ${cfg.moderation.model.venv} (${venvMs > 1000 ? `built in ${(venvMs / 1000).toFixed(1)} s` : 'cached'})`);
      out(`model start: ${(scorer.startMs / 1000).toFixed(2)} s from spawn to ready (loading the model: ${(scorer.loadMs / 1000).toFixed(2)} s)`);
    } else out('model: not run (--no-model)');

    // --- the labelled set -----------------------------------------------------------
    const ruleOf = items.map((i) => judgeAlone(i.text, o.words, settings));
    const scores = scorer ? (await scorer.score(items.map((i) => i.text))).scores : undefined;
    const flagged: Record<Stage, boolean[]> = {
      rules: ruleOf.map((r) => r !== undefined),
      model: scores ? scores.map((s) => s >= threshold) : items.map(() => false),
      combined: items.map((_, i) => ruleOf[i] !== undefined || (scores !== undefined && scores[i]! >= threshold)),
    };
    const stages: Stage[] = scorer ? ['rules', 'model', 'combined'] : ['rules', 'combined'];
    const results = Object.fromEntries(stages.map((s) => [s, confusion(items, flagged[s])])) as Record<Stage, Confusion>;
    out('');
    out(`labelled set        TP   FP   FN   TN  precision  recall   ${langs.map((l) => padEnd(`${l} P/R`, 11)).join(' ')}`);
    for (const s of stages) {
      const c = results[s];
      const byLang = langs.map((l) => {
        const idx = items.map((it, i) => (it.lang === l ? i : -1)).filter((i) => i >= 0);
        const lc = confusion(
          idx.map((i) => items[i]!),
          idx.map((i) => flagged[s][i]!),
        );
        return padEnd(`${f2(lc.precision)}/${f2(lc.recall)}`, 11);
      });
      out(`${padEnd(s, 17)} ${pad(c.tp, 4)} ${pad(c.fp, 4)} ${pad(c.fn, 4)} ${pad(c.tn, 4)}  ${pad(f2(c.precision), 9)}  ${pad(f2(c.recall), 6)}   ${byLang.join(' ')}`);
    }
    if (scores) {
      // How the threshold trades precision for recall (the model alone).
      const sweep = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99].map((t) => {
        const c = confusion(
          items,
          scores.map((x) => x >= t),
        );
        return `${t}: ${f2(c.precision)}/${f2(c.recall)}`;
      });
      out(`model threshold sweep (precision/recall): ${sweep.join(', ')}`);
    }
    if (o.mistakes) {
      for (const s of stages) {
        out(`${s}: false positives: ${items.filter((it, i) => flagged[s][i] && it.label === 'clean').map((it) => JSON.stringify(it.text)).join(' ') || '-'}`);
        out(`${s}: false negatives: ${items.filter((it, i) => !flagged[s][i] && it.label === 'abusive').map((it) => JSON.stringify(it.text)).join(' ') || '-'}`);
      }
    }

    // --- real chat ------------------------------------------------------------------
    out('');
    const present = o.dataDir ? CHAT_LOGS.filter((f) => fs.existsSync(path.join(o.dataDir!, f))) : [];
    let flaggedPct: number | undefined;
    const batchMs: number[] = [];
    let batchTexts = 0;
    if (present.length === 0) {
      out(`real chat: not evaluated (${o.dataDir ? `no ${CHAT_LOGS.join(' or ')} in ${o.dataDir}` : 'no data folder'})`);
    } else {
      out(`real chat (${o.dataDir})       comments   rules     model  combined   rules with user histories (repeat, flood)`);
      let all = 0;
      let allCombined = 0;
      for (const file of present) {
        const lines = await readChatLog(path.join(o.dataDir!, file));
        const texts = lines.map((l) => l.text);
        const rules = texts.map((t) => judgeAlone(t, o.words, settings));
        let model: boolean[] = texts.map(() => false);
        if (scorer) {
          const step = cfg.moderation.model.batchMax;
          model = [];
          for (let i = 0; i < texts.length; i += step) {
            const b = await scorer.score(texts.slice(i, i + step));
            batchMs.push(b.modelMs);
            batchTexts += Math.min(step, texts.length - i);
            for (const s of b.scores) model.push(s >= threshold);
          }
        }
        const nRules = rules.filter((r) => r !== undefined).length;
        const nModel = model.filter(Boolean).length;
        const nCombined = texts.filter((_, i) => rules[i] !== undefined || model[i]).length;
        const behaviour = withHistories(lines, o.words, settings);
        all += texts.length;
        allCombined += nCombined;
        out(
          `${padEnd(file, 36)} ${pad(texts.length, 8)} ${pad(f2(pct(nRules, texts.length)), 6)} % ${pad(scorer ? f2(pct(nModel, texts.length)) : '-', 6)} % ${pad(f2(pct(nCombined, texts.length)), 6)} %   ${f2(pct(behaviour.flagged, texts.length))} % (${Object.entries(behaviour.byRule).map(([r, n]) => `${r} ${n}`).join(', ') || 'none'})`,
        );
        const byRule = new Map<string, number>();
        for (const r of rules) if (r !== undefined) byRule.set(r.split(':')[0]!, (byRule.get(r.split(':')[0]!) ?? 0) + 1);
        out(`${padEnd('', 36)}   rules by kind: ${[...byRule].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
      }
      flaggedPct = pct(allCombined, all);
      out(`${padEnd('both', 36)} ${pad(all, 8)} ${pad('', 17)} ${pad(f2(flaggedPct), 6)} %`);
    }

    // --- the model's cost -----------------------------------------------------------
    if (scorer) {
      out('');
      const pool = items.map((i) => i.text);
      const sizes = [1, 10, 50, cfg.moderation.model.batchMax];
      const rows: string[] = [];
      for (const size of sizes) {
        const ms: number[] = [];
        const runs = size >= 500 ? 10 : 30;
        for (let r = 0; r < runs; r++) {
          const batch = Array.from({ length: size }, (_, i) => pool[(r * size + i) % pool.length]!);
          ms.push((await scorer.score(batch)).modelMs);
        }
        ms.sort((a, b) => a - b);
        rows.push(`${size}: p50 ${f2(quantile(ms, 0.5))} ms, p95 ${f2(quantile(ms, 0.95))} ms`);
      }
      out(`model latency per batch (one model call; batch size: p50, p95 over 10-30 calls): ${rows.join('; ')}`);
      if (batchMs.length > 0) {
        const s = [...batchMs].sort((a, b) => a - b);
        const total = s.reduce((a, b) => a + b, 0);
        out(
          `model latency on real chat: ${s.length} batches of up to ${cfg.moderation.model.batchMax}: p50 ${f2(quantile(s, 0.5))} ms, p95 ${f2(quantile(s, 0.95))} ms, max ${f2(s.at(-1)!)} ms; ${((1000 * total) / batchTexts).toFixed(1)} µs per comment`,
        );
      }
    }

    const line = evalLine(results.combined.precision, results.combined.recall, flaggedPct);
    out('');
    out(line);
    return { combined: results.combined, rules: results.rules, model: scorer ? results.model : undefined, flaggedPct, line };
  } finally {
    await scorer?.close();
  }
}

/** The rules as the processor runs them on a log: per room and user, histories kept, in log order. */
function withHistories(lines: ChatLine[], words: WordMatcher, s: ModerationSettings): { flagged: number; byRule: Record<string, number> } {
  const histories = new Map<string, UserHistory>();
  const byRule: Record<string, number> = {};
  let flagged = 0;
  for (const [i, l] of lines.entries()) {
    // Without a user id, each comment is its own user (no repeat or flood to see).
    const key = l.user === null ? `#${i}` : `${l.room}\u0000${l.user}`;
    const r = judge({ eventId: String(i), userId: key, role: 'viewer', text: l.text, occurredAt: l.at }, histories.get(key), words, s);
    if (l.user !== null) histories.set(key, r.history);
    if (r.judgement.verdict !== 'allow') {
      flagged++;
      const kind = r.judgement.rule.split(':')[0]!;
      byRule[kind] = (byRule[kind] ?? 0) + 1;
    }
  }
  return { flagged, byRule };
}
