/**
 * npm run config -- doc     every setting as a Markdown table (env, default, doc)
 * npm run config -- show    the effective configuration as JSON (validated)
 */
import { configMarkdown, loadConfig } from './config.ts';
import { AppError } from './errors.ts';

const cmd = process.argv[2] ?? 'doc';
try {
  if (cmd === 'doc') console.log(configMarkdown());
  else if (cmd === 'show') console.log(JSON.stringify(loadConfig(), (k, v) => (/password/i.test(k) && v ? '***' : v), 2));
  else {
    console.error('usage: npm run config -- <doc|show>');
    process.exit(2);
  }
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exit(1);
}
