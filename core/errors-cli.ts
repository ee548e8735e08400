/**
 * npm run errors            rewrite docs/errors.md and the README's table from the catalogue in core/errors.ts
 * npm run errors -- doc     print the table (Markdown)
 * npm run errors -- check   exit 1 when docs/errors.md or the README differ from the catalogue
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './config.ts';
import { AppError, errorsDoc, errorsMarkdown, readmeWithErrorTable } from './errors.ts';

const DOC = path.join(REPO_ROOT, 'docs', 'errors.md');
const README = path.join(REPO_ROOT, 'README.md');

function main(cmd: string): void {
  if (cmd === 'doc') {
    console.log(errorsMarkdown());
    return;
  }
  if (cmd !== 'write' && cmd !== 'check') {
    console.error('usage: npm run errors -- <write|doc|check>');
    process.exit(2);
  }
  const readme = fs.readFileSync(README, 'utf8');
  const doc = fs.existsSync(DOC) ? fs.readFileSync(DOC, 'utf8') : '';
  const want = { doc: errorsDoc(), readme: readmeWithErrorTable(readme) };
  const stale = [...(doc === want.doc ? [] : ['docs/errors.md']), ...(readme === want.readme ? [] : ['README.md'])];
  if (cmd === 'check') {
    if (stale.length > 0) {
      console.error(`error codes out of date in ${stale.join(' and ')}: run \`npm run errors\``);
      process.exit(1);
    }
    console.log('error code docs are current');
    return;
  }
  if (doc !== want.doc) fs.writeFileSync(DOC, want.doc);
  if (readme !== want.readme) fs.writeFileSync(README, want.readme);
  console.log(stale.length === 0 ? 'error code docs already current' : `updated ${stale.join(' and ')}`);
}

try {
  main(process.argv[2] ?? 'write');
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exit(1);
}
