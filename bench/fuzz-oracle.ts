/**
 * The fuzzer's oracle: an independent reading of the request (a trimmed protobufjs schema, strict UTF-8) that says
 * whether an allow is justified. Part of the fuzzer run by bench/fuzz.ts and test/fuzz/check.fuzz.test.ts
 * (docs/hardening.md).
 */
import net, { BlockList } from 'node:net';
import { Root } from 'protobufjs';
import type { SeededKey, World } from './fuzz-world';

/** Only the fields on the decision path; every string as bytes; map entries as a plain repeated message. */
export const REFERENCE_ROOT = Root.fromJSON({
  nested: {
    ref: {
      nested: {
        CheckRequest: { fields: { attributes: { type: 'AttributeContext', id: 1 } } },
        AttributeContext: {
          fields: { source: { type: 'Peer', id: 1 }, request: { type: 'Request', id: 4 } },
        },
        Peer: { fields: { address: { type: 'Address', id: 1 } } },
        Address: {
          fields: {
            socket_address: { type: 'SocketAddress', id: 1 },
            pipe: { type: 'bytes', id: 2 },
            envoy_internal_address: { type: 'bytes', id: 3 },
          },
        },
        SocketAddress: { fields: { address: { type: 'bytes', id: 2 } } },
        Request: { fields: { http: { type: 'HttpRequest', id: 2 } } },
        HttpRequest: {
          fields: {
            method: { type: 'bytes', id: 2 },
            headers: { rule: 'repeated', type: 'Entry', id: 3 },
            path: { type: 'bytes', id: 4 },
            header_map: { type: 'HeaderMap', id: 13 },
          },
        },
        Entry: { fields: { key: { type: 'bytes', id: 1 }, value: { type: 'bytes', id: 2 } } },
        HeaderMap: { fields: { headers: { rule: 'repeated', type: 'HeaderValue', id: 1 } } },
        HeaderValue: {
          fields: {
            key: { type: 'bytes', id: 1 },
            value: { type: 'bytes', id: 2 },
            raw_value: { type: 'bytes', id: 3 },
          },
        },
      },
    },
  },
});
export const ReferenceRequest = REFERENCE_ROOT.lookupType('ref.CheckRequest');

export type Msg = Record<string, unknown>;
export const child = (m: unknown, name: string): Msg | undefined => {
  const v = (m as Msg | undefined)?.[name];
  return v !== null && typeof v === 'object' ? (v as Msg) : undefined;
};
export const bytesField = (m: unknown, name: string): Uint8Array | undefined => {
  const v = (m as Msg | undefined)?.[name];
  return v instanceof Uint8Array ? v : undefined;
};
export const STRICT = new TextDecoder('utf-8', { fatal: true });
/** Strict UTF-8, or null: the oracle never guesses what invalid bytes meant. */
export function strict(bytes: Uint8Array | undefined): string | null {
  if (bytes === undefined) return '';
  try {
    return STRICT.decode(bytes);
  } catch {
    return null;
  }
}

export function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split('/') as [string, string];
    list.addSubnet(ip, Number(bits), net.isIPv6(ip) ? 'ipv6' : 'ipv4');
  }
  return list;
}
export const inList = (list: BlockList, ip: string) => list.check(ip, net.isIPv6(ip) ? 'ipv6' : 'ipv4');

/** The vault a path names: `/v1/vaults/<id>` then end or `/`, query cut at the first `?`. */
export function simpleVault(path: string): string | null {
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  return /^\/v1\/vaults\/([A-Za-z0-9][A-Za-z0-9_-]{0,63})(?:\/.*)?$/s.exec(p)?.[1] ?? null;
}

/** A second reading, as a decoding server would: percent-decode once, `\` as `/`, resolve dot segments, merge `//`. */
export function resolvedVault(path: string): string | null {
  const q = path.indexOf('?');
  let p = q < 0 ? path : path.slice(0, q);
  try {
    p = decodeURIComponent(p);
  } catch {
    return null;
  }
  const out: string[] = [];
  for (const segment of p.replace(/\\/g, '/').split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return simpleVault('/' + out.join('/'));
}

export type Justification =
  { ok: true; key: SeededKey; fortaryNames: string[]; apiKey: boolean } | { ok: false; why: string };

/** Why an allow of these request bytes would be justified, or why not. */
export function justify(world: World, bytes: Uint8Array): Justification {
  let decoded: Msg;
  try {
    decoded = ReferenceRequest.toObject(ReferenceRequest.decode(bytes)) as Msg;
  } catch (error) {
    return { ok: false, why: `unreadable: ${(error as Error).message}` };
  }
  const attributes = child(decoded, 'attributes');
  const http = child(child(attributes, 'request'), 'http');
  if (http === undefined) return { ok: false, why: 'no http request' };
  const method = strict(bytesField(http, 'method'));
  if (method !== 'GET' && method !== 'HEAD') return { ok: false, why: `method ${JSON.stringify(method)}` };

  const headerMap = (child(http, 'header_map')?.headers as Msg[] | undefined) ?? [];
  const lines: Array<[string, Uint8Array]> =
    headerMap.length > 0
      ? headerMap.map((h) => {
          const raw = bytesField(h, 'raw_value');
          return [
            Buffer.from(bytesField(h, 'key') ?? []).toString('utf8'),
            raw !== undefined && raw.length > 0 ? raw : (bytesField(h, 'value') ?? new Uint8Array()),
          ];
        })
      : ((http.headers as Msg[] | undefined) ?? []).map((e) => [
          Buffer.from(bytesField(e, 'key') ?? []).toString('utf8'),
          bytesField(e, 'value') ?? new Uint8Array(),
        ]);
  const named = (name: string) => lines.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

  const authorization = named('authorization');
  if (authorization.length !== 1) return { ok: false, why: `${authorization.length} authorization lines` };
  const match = /^bearer ([\x21-\x7e]+)$/i.exec(
    Buffer.from(authorization[0] as Uint8Array).toString('latin1'),
  );
  if (match === null) return { ok: false, why: 'authorization is not `Bearer <token>`' };
  const key = world.keys.find((k) => k.token === match[1]);
  if (key === undefined) return { ok: false, why: 'not the token of a seeded key' };
  if (key.reachable.length === 0) return { ok: false, why: `key ${key.name} may never be allowed` };

  const path = strict(bytesField(http, 'path'));
  if (path === null) return { ok: false, why: 'path is not UTF-8' };
  const vault = simpleVault(path);
  if (vault === null || resolvedVault(path) !== vault)
    return { ok: false, why: `path ${JSON.stringify(path.slice(0, 80))} names no single vault` };
  if (!key.reachable.includes(vault))
    return { ok: false, why: `vault ${vault} not reachable with ${key.name}` };

  if (key.ipAllowlist.length > 0) {
    const address = child(child(attributes, 'source'), 'address');
    const socket = child(address, 'socket_address');
    if (
      socket === undefined ||
      address?.pipe !== undefined ||
      address?.envoy_internal_address !== undefined
    ) {
      return { ok: false, why: 'no single socket address' };
    }
    const peer = strict(bytesField(socket, 'address'))?.trim() ?? '';
    if (net.isIP(peer) === 0) return { ok: false, why: `peer ${JSON.stringify(peer)} is not an IP` };
    let client = peer;
    const trusted = blockList(world.trustedProxies);
    const forwarded = named('x-forwarded-for').map((v) => Buffer.from(v).toString('utf8'));
    if (inList(trusted, peer) && forwarded.length > 0 && forwarded.join(',') !== '') {
      // The rightmost hop that is not a trusted proxy; everything left of it was written by the client.
      const hops = forwarded.join(',').split(',');
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = (hops[i] as string).trim();
        if (net.isIP(hop) === 0)
          return { ok: false, why: `X-Forwarded-For hop ${JSON.stringify(hop)} is not an IP` };
        client = hop;
        if (!inList(trusted, hop)) break;
      }
    }
    if (!inList(blockList(key.ipAllowlist), client))
      return { ok: false, why: `client ${client} not in ${key.name}'s allowlist` };
  }
  const fortaryNames = [
    ...new Set(lines.map(([n]) => n.toLowerCase()).filter((n) => n.startsWith('x-fortary-'))),
  ];
  return { ok: true, key, fortaryNames, apiKey: named('x-api-key').length > 0 };
}
