/**
 * A JSON-RPC proxy in front of a real node (anvil), over real HTTP, that injects faults BELOW the
 * signer: a chosen method is refused without reaching the node (`refuse`), or forwarded and its
 * answer lost (`loseAnswer`). Every forwarded request is logged (method and params) so a test can
 * check what the client asked for.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

interface RpcRequest {
  jsonrpc: '2.0';
  id: number | string | null;
  method: string;
  params?: unknown[];
}

export type Fault = 'refuse' | 'loseAnswer';

export interface RpcProxy {
  url: string;
  /** Requests seen, in order (batch members one by one). */
  seen: { method: string; params: unknown[] }[];
  /** The next `times` calls of `method` fail as `fault`. */
  failNext(method: string, fault: Fault, times?: number): void;
  close(): Promise<void>;
}

export async function startRpcProxy(target: string): Promise<RpcProxy> {
  const faults: { method: string; fault: Fault; left: number }[] = [];
  const seen: RpcProxy['seen'] = [];
  const take = (method: string): Fault | undefined => {
    const f = faults.find((x) => x.method === method && x.left > 0);
    if (!f) return undefined;
    f.left--;
    return f.fault;
  };
  const forward = async (body: string): Promise<string> => {
    const res = await fetch(target, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return res.text();
  };
  const one = async (req: RpcRequest): Promise<unknown | undefined> => {
    seen.push({ method: req.method, params: req.params ?? [] });
    const fault = take(req.method);
    if (fault === 'refuse') return { jsonrpc: '2.0', id: req.id, error: { code: -32603, message: 'injected fault: upstream unavailable' } };
    const answer = JSON.parse(await forward(JSON.stringify(req))) as unknown;
    if (fault === 'loseAnswer') return undefined;
    return answer;
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RpcRequest | RpcRequest[];
          const answers = Array.isArray(body) ? await Promise.all(body.map(one)) : [await one(body)];
          if (answers.some((a) => a === undefined)) {
            // The request reached the node; its answer is lost on the way back.
            res.destroy();
            return;
          }
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(Array.isArray(body) ? answers : answers[0]));
        } catch (e) {
          res.statusCode = 502;
          res.end(String(e));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    failNext(method, fault, times = 1) {
      faults.push({ method, fault, left: times });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
