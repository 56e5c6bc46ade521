/** Free TCP ports on loopback for the bench's servers (the kernel's choice for port 0). */
import net from 'node:net';

/** One port nobody listens on now (the kernel's choice for port 0). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0] as number;
}

/**
 * `count` distinct free ports. All are held open until the last is chosen: closing each before asking for the next
 * lets the kernel hand out the same port twice (seen: a sidecar refused to start because two addresses matched).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      server.unref();
      servers.push(server);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
        }),
      );
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
