/**
 * Tests and benches reserve loopback ports with freePorts before the servers that use them start. A port reserved
 * earlier but not yet bound must never be handed out again, or two servers end up told the same port.
 */
import net from 'node:net';
import { freePort, freePorts } from '../../bench/free-ports';

test('no port is handed out twice in a process, even after its reservation ended', async () => {
  const seen: number[] = [];
  for (let i = 0; i < 30; i++) {
    seen.push(...(await freePorts(3)), await freePort());
  }
  expect(new Set(seen).size).toBe(seen.length);
});

test('the ports it hands out can be bound at once', async () => {
  const ports = await freePorts(4);
  const servers = await Promise.all(
    ports.map(
      (port) =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once('error', reject);
          server.listen(port, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});
