/**
 * npm run moderation -- eval [--labelled <file.jsonl>] [--data <dir> | --no-data] [--no-model] [--mistakes]
 *
 * Runs each moderation stage (rules, model, combined) over the hand-labelled
 * set and the real chat logs (default ../shared/data beside the clone) and
 * prints precision, recall, the share flagged on real chat and the model's
 * latency; the last line is the summary (see eval.ts).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, REPO_ROOT } from '../../core/config.ts';
import { AppError } from '../../core/errors.ts';
import { DEFAULT_LABELLED_PATH, runEval } from './eval.ts';
import { WordListFile } from './wordlist.ts';

const USAGE = 'usage: npm run moderation -- eval [--labelled <file.jsonl>] [--data <dir> | --no-data] [--no-model] [--mistakes]';

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      labelled: { type: 'string' },
      data: { type: 'string' },
      'no-data': { type: 'boolean' },
      'no-model': { type: 'boolean' },
      mistakes: { type: 'boolean' },
    },
  });
  if (positionals[0] !== 'eval' || positionals.length > 1) {
    console.error(USAGE);
    return 2;
  }
  const cfg = loadConfig();
  const list = new WordListFile(cfg.moderation.wordlist);
  await runEval({
    cfg,
    words: list.current(),
    wordsLabel: `word list ${path.relative(process.cwd(), cfg.moderation.wordlist)} (${list.words().length} entries, includes resolved)`,
    labelledPath: path.resolve(values.labelled ?? DEFAULT_LABELLED_PATH),
    dataDir: values['no-data'] ? undefined : path.resolve(values.data ?? path.join(REPO_ROOT, '..', 'shared', 'data')),
    model: !values['no-model'],
    mistakes: values.mistakes ?? false,
  });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
    process.exit(1);
  },
);
