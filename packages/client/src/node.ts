/**
 * IrcClient for Node: the core client with the transport names 'tcp' (node:net) and 'ws' (the `ws`
 * library). This is the `IrcClient` that `@parley/client` exports.
 */
import { IrcClient as CoreIrcClient, IrcClientError, type IrcClientOptions } from './client.js';
import { NodeWebSocketTransport, TcpTransport } from './node-transports.js';
import type { IrcTransport, TransportName } from './transport.js';

export class IrcClient extends CoreIrcClient {
  protected override createTransport(name: TransportName, opts: IrcClientOptions): IrcTransport {
    const { host, port, localAddress } = opts;
    if (host === undefined || port === undefined) throw new IrcClientError(`transport '${name}' needs host and port`);
    if (name === 'tcp') return new TcpTransport({ host, port, localAddress });
    return new NodeWebSocketTransport({ host, port, localAddress, path: opts.path, protocols: opts.wsProtocols, origin: opts.origin });
  }
}
