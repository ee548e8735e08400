/**
 * npm run config -- doc     every setting as a Markdown table (env, default, doc)
 * npm run config -- readme  rewrite the README's table from the code
 * npm run config -- show    the effective configuration as JSON (validated)
 */
import fs from 'node:fs';
import path from 'node:path';
import { configMarkdown, loadConfig, REPO_ROOT } from './config.ts';
import { AppError } from './errors.ts';

const cmd = process.argv[2] ?? 'doc';
try {
  if (cmd === 'doc') console.log(configMarkdown());
  else if (cmd === 'readme') {
    // Rewrites the table between the README's config markers, so the docs follow the code.
    const file = path.join(REPO_ROOT, 'README.md');
    const text = fs.readFileSync(file, 'utf8');
    const next = text.replace(/(<!-- config:start[^\n]*-->\n)[\s\S]*?(<!-- config:end -->)/, `$1${configMarkdown()}\n$2`);
    fs.writeFileSync(file, next);
    console.log(next === text ? 'README config table already current' : 'README config table updated');
  } else if (cmd === 'show') console.log(JSON.stringify(loadConfig(), (k, v) => (/password/i.test(k) && v ? '***' : v), 2));
  else {
    console.error('usage: npm run config -- <doc|readme|show>');
    process.exit(2);
  }
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exit(1);
}
