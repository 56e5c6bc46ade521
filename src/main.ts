/**
 * `npm start`: read and validate the configuration, start the sidecar, drain on SIGTERM/SIGINT and exit 0.
 */
import { readConfig } from './config';
import { createLogger } from './observability/logger';
import { startSidecar } from './sidecar';

async function main(): Promise<void> {
  const result = readConfig(process.env);
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`fortary-authz: config: ${problem}\n`);
    process.exit(1);
  }
  const logger = createLogger(result.config.logLevel);
  let sidecar: Awaited<ReturnType<typeof startSidecar>>;
  try {
    sidecar = await startSidecar(result.config, { logger });
  } catch (error) {
    logger.fatal({ error: error instanceof Error ? error.message : String(error) }, 'failed to start');
    // Exit explicitly: a half-started process must not linger (the Redis clients would keep it alive).
    logger.flush(() => process.exit(1));
    return;
  }
  const stop = (signal: string) => {
    logger.info({ signal }, 'draining');
    sidecar.close().then(() => {
      logger.info('stopped');
      logger.flush(() => process.exit(0));
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

void main();
