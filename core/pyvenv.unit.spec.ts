import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureVenv, venvFreeze, venvPython, venvReady } from './pyvenv.ts';

describe('pyvenv', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  /** A folder that looks like a finished build of `packages` (no pip involved). */
  function fakeVenv(packages: string[], marker = true): string {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pyvenv-')), 'venv');
    dirs.push(path.dirname(dir));
    fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
    fs.writeFileSync(venvPython(dir), '');
    if (marker) fs.writeFileSync(path.join(dir, '.danmaku-installed.json'), JSON.stringify({ packages, installedAt: 'x', freeze: ['a==1'] }));
    return dir;
  }

  it('given a venv whose marker lists the same packages, when checked, then it is ready and reused without a build', async () => {
    const dir = fakeVenv(['a==1', 'b']);
    expect(venvReady(dir, ['a==1', 'b'])).toBe(true);
    expect(venvFreeze(dir)).toEqual(['a==1']);
    // A build would run `python3 -m venv`: a missing interpreter proves none is attempted.
    await expect(ensureVenv({ dir, packages: ['a==1', 'b'], python: '/nonexistent/python' })).resolves.toBe(venvPython(dir));
  });

  it('given another package list or no marker (an interrupted build), when checked, then it must be rebuilt', async () => {
    expect(venvReady(fakeVenv(['a==1']), ['a==2'])).toBe(false);
    const interrupted = fakeVenv(['a==1'], false);
    expect(venvReady(interrupted, ['a==1'])).toBe(false);
    await expect(ensureVenv({ dir: interrupted, packages: ['a==1'], python: '/nonexistent/python' })).rejects.toThrow(/nonexistent/);
    expect(fs.existsSync(`${interrupted}.lock`)).toBe(false); // the lock is released after a failed build
  });
});
