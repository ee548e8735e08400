/**
 * npm run schemas -- register [--schema file]  register (idempotent) with BACKWARD_TRANSITIVE
 * npm run schemas -- check [--schema file]     is the local .avsc compatible with what is registered? exit 1 if not
 * npm run schemas -- fixtures                  write encoded sample events for the newest schema version
 * npm run schemas -- gen                       regenerate schemas/types.gen.ts from the .avsc
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { loadRoomEventSchema, toWire } from './codec.ts';
import { writeFixtures } from './fixtures.ts';
import { expectedTypesFile, TYPES_FILE } from './gen-types.ts';
import { checkRoomEvents, registerRoomEvents } from './registry.ts';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { schema: { type: 'string' } } });
const cfg = loadConfig();
const schema = values.schema ? loadRoomEventSchema(values.schema) : loadRoomEventSchema();
try {
  switch (positionals[0]) {
    case 'register': {
      const r = await registerRoomEvents(cfg.registry.url, cfg.topics.roomEvents, schema);
      console.log(`registered ${r.subject}: id ${r.id}, version ${r.version} (compatibility BACKWARD_TRANSITIVE)`);
      break;
    }
    case 'check': {
      const r = await checkRoomEvents(cfg.registry.url, cfg.topics.roomEvents, schema);
      if (r.newSubject) console.log(`${r.subject}: nothing registered yet; compatible`);
      else if (r.compatible) console.log(`${r.subject}: compatible with the registered versions`);
      else {
        console.log(`${r.subject}: NOT compatible with the registered versions (BACKWARD_TRANSITIVE)`);
        for (const m of r.messages) console.log(`  ${m}`);
        process.exitCode = 1;
      }
      break;
    }
    case 'fixtures':
      console.log(`wrote ${writeFixtures(toWire)}`);
      break;
    case 'gen':
      fs.writeFileSync(TYPES_FILE, expectedTypesFile());
      console.log(`wrote ${TYPES_FILE}`);
      break;
    default:
      console.error('usage: npm run schemas -- <register|check|gen|fixtures> [--schema file.avsc]');
      process.exitCode = 2;
  }
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
}
