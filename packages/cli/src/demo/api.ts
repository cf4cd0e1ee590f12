/**
 * The REST calls `parley demo qos` makes (docs/http-api.md): classes, room classes, the room list
 * with counters, the configuration. Each failure is a DemoError with one line.
 */
import type { QosClass, QosCounts } from '@parley/contracts';

export class DemoError extends Error {}

/** A room as `GET /api/rooms` lists it. */
export interface RoomView {
  room: string;
  shard: number | null;
  class: string;
  override: string | null;
  rate: number | null;
  burst: number | null;
  counts: QosCounts;
}

export class DemoApi {
  constructor(private readonly base: string, private readonly token: string) {}

  /**
   * One request; a read (GET) that gets no answer or a 5xx is tried again (4 more times, 1 s
   * apart): an instance busy with a thousand shards may miss its readiness check for a moment and
   * the front door then answers 503.
   */
  private async call(method: string, route: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    for (let attempt = 0; ; attempt++) {
      const retry = method === 'GET' && attempt < 4;
      try {
        const r = await this.once(method, route, body);
        if (r.status < 500 || !retry) return r;
      } catch (err) {
        if (!retry) throw err;
      }
      await new Promise((res) => setTimeout(res, 1_000));
    }
  }

  private async once(method: string, route: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${route}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new DemoError(`the REST API at ${this.base} does not answer ${method} ${route} (${(err as Error).message})`);
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: reported with the status
    }
    return { status: res.status, json };
  }

  private check(what: string, r: { status: number; json: unknown }, ok: number[]): unknown {
    if (ok.includes(r.status)) return r.json;
    const msg = (r.json as { error?: unknown } | null)?.error;
    throw new DemoError(`${what}: HTTP ${r.status}${typeof msg === 'string' ? `: ${msg}` : ''}`);
  }

  async putClass(name: string, cls: QosClass): Promise<void> {
    this.check(`PUT /api/qos/classes/${name}`, await this.call('PUT', `/api/qos/classes/${encodeURIComponent(name)}`, cls), [200, 201]);
  }

  async deleteClass(name: string): Promise<void> {
    this.check(`DELETE /api/qos/classes/${name}`, await this.call('DELETE', `/api/qos/classes/${encodeURIComponent(name)}`), [204, 404]);
  }

  async setRoomClass(room: string, cls: string): Promise<void> {
    this.check(`PUT /api/rooms/${room}/qos`, await this.call('PUT', `/api/rooms/${encodeURIComponent(room)}/qos`, { class: cls }), [200, 201]);
  }

  /** flood.linesPerSecond of the cluster configuration (0 = no flood limit). */
  async floodLimit(): Promise<number> {
    const j = this.check('GET /api/config', await this.call('GET', '/api/config'), [200]) as { flood?: { linesPerSecond?: unknown } };
    const v = j.flood?.linesPerSecond;
    return typeof v === 'number' ? v : 20;
  }

  /** Every room whose name contains `q`, all pages. */
  async rooms(q: string): Promise<RoomView[]> {
    const out: RoomView[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10_000; page++) {
      const qs = new URLSearchParams({ q, limit: '1000', ...(cursor !== null ? { cursor } : {}) });
      const j = this.check('GET /api/rooms', await this.call('GET', `/api/rooms?${qs}`), [200]) as { rooms: RoomView[]; nextCursor?: string | null };
      out.push(...j.rooms);
      cursor = j.nextCursor ?? null;
      if (cursor === null || j.rooms.length === 0) break;
    }
    return out;
  }
}
