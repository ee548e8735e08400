/** Starting the product's own commands as real child processes (to kill -9 them for real). */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../core/config.ts';
import { ServiceProcess } from '../services/spawn.ts';
import { waitFor } from './helpers.ts';

export interface Proc {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** Runs `node --import tsx <script> ...args` with extra environment. */
export function startScript(script: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, script), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const take = (b: Buffer) => output.push(...b.toString('utf8').split('\n').filter(Boolean));
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    output,
    exited,
    waitForLine: (re, timeoutMs = 60_000) =>
      waitFor(
        () => {
          if (done) throw new Error(`${script} exited; output:\n${output.slice(-30).join('\n')}`);
          return output.find((l) => re.test(l));
        },
        { what: `${re} from ${script}`, timeoutMs },
      ),
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (!done) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Starts a long-running command of the composition root (e.g. `['pipelines',
 * 'run']`, `['gateway']`, `['archiver', 'run']`) as a real child process and
 * resolves once it reported itself ready over IPC.
 */
export async function startService(argv: string[], env: Record<string, string>, o: { readyTimeoutMs?: number } = {}): Promise<ServiceProcess> {
  const p = new ServiceProcess([], { argv, env, readyTimeoutMs: o.readyTimeoutMs });
  await p.start();
  return p;
}
