/** One chaos row as table cells: the console's table (cli.ts) and, formatted for reading, docs/reliability.md (report.ts). */
import type { Row } from './verify.ts';

export function rowCells(r: Row): string[] {
  const ch = (v: number | undefined) => (v === undefined ? '–' : String(v));
  return [
    r.fault,
    String(r.repeats),
    String(r.rate),
    String(r.acked),
    `${r.lostLog}/${r.lostFeed}/${r.lostTallies}/${ch(r.lostClickhouse)}`,
    `${r.dupLog}/${r.dupFeed}/${r.dupTallies}/${ch(r.dupClickhouse)}`,
    String(r.viewerGaps),
    String(r.viewerDups),
    String(r.resyncs),
    r.recoverySec.map((s) => (Number.isFinite(s) ? s.toFixed(1) : 'never')).join(', '),
    String(r.refused),
    String(r.unknown),
  ];
}
