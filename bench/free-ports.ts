/** Free TCP ports on loopback for the bench's servers (the kernel's choice for port 0). */
import net from 'node:net';

/** One port nobody listens on now (the kernel's choice for port 0). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0] as number;
}

/**
 * Every port this process has handed out. A port is only reserved until it is returned, so a later call could get
 * one that an earlier caller has not bound yet (seen: a test kept a port for a Redis it starts later, the sidecar
 * it spawned meanwhile got the same port for its health listener, and that Redis could never start). A process
 * never gets the same port twice.
 */
const handedOut = new Set<number>();

/**
 * `count` distinct free ports, none handed out before by this process. All are held open until the last is chosen:
 * closing each before asking for the next lets the kernel hand out the same port twice (seen: a sidecar refused to
 * start because two addresses matched).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    // Bounded: the kernel picks from tens of thousands of ephemeral ports, so repeats are rare.
    for (let attempt = 0; ports.length < count; attempt++) {
      if (attempt >= count + 100)
        throw new Error(`freePorts: no ${count} new free ports after ${attempt} tries`);
      const server = net.createServer();
      server.unref();
      servers.push(server);
      const port = await new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
      });
      if (!handedOut.has(port)) ports.push(port);
    }
    for (const port of ports) handedOut.add(port);
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
