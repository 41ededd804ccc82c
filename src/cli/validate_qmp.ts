// `balloonlab validate` (issue #5): the two line channels to a running QEMU, both unix sockets
// this process listens on and QEMU connects to as a client (so nothing has to poll for a socket
// file): QMP (JSON lines, `qmp_capabilities` first, one command outstanding at a time, events
// kept) and the guest workload's serial port (/dev/ttyS1; text lines, see
// validate/guest/workload.c).

import { createServer, type Server, type Socket } from "node:net";

/** Lines from a socket, with a queue of waiters. */
class LineReader {
  private buffer = "";
  private readonly lines: string[] = [];
  private readonly waiters: Array<(line: string | undefined) => void> = [];
  private closed = false;

  constructor(socket: Socket, onLine?: (line: string) => void) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let end = this.buffer.indexOf("\n");
      while (end >= 0) {
        const line = this.buffer.slice(0, end).replace(/\r$/, "");
        this.buffer = this.buffer.slice(end + 1);
        onLine?.(line);
        this.push(line);
        end = this.buffer.indexOf("\n");
      }
    });
    const close = (): void => {
      this.closed = true;
      for (const waiter of this.waiters.splice(0)) waiter(undefined);
    };
    socket.on("close", close);
    socket.on("error", close);
  }

  private push(line: string): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) this.lines.push(line);
    else waiter(line);
  }

  /** The next line, or undefined when the socket closed or `timeoutMs` passed. */
  next(timeoutMs: number): Promise<string | undefined> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(done);
        if (index >= 0) this.waiters.splice(index, 1);
        resolve(undefined);
      }, timeoutMs);
      const done = (value: string | undefined): void => {
        clearTimeout(timer);
        resolve(value);
      };
      this.waiters.push(done);
    });
  }
}

/** A unix-socket server that hands over its first connection. */
export class SocketListener {
  private readonly server: Server;
  private readonly connection: Promise<Socket>;

  private constructor(server: Server, connection: Promise<Socket>) {
    this.server = server;
    this.connection = connection;
  }

  static async listen(path: string): Promise<SocketListener> {
    let accept: (socket: Socket) => void = () => undefined;
    const connection = new Promise<Socket>((resolve) => {
      accept = resolve;
    });
    const server = createServer((socket) => accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    return new SocketListener(server, connection);
  }

  /** The first connection, or an error after `timeoutMs`. */
  async accept(timeoutMs: number, what: string): Promise<Socket> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: QEMU did not connect`)), timeoutMs);
    });
    try {
      return await Promise.race([this.connection, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.server.close();
  }
}

export interface QmpReply {
  readonly return?: unknown;
  readonly error?: { readonly class: string; readonly desc: string };
}

/** A QMP client: greeting, capabilities negotiation, then one command at a time. */
export class QmpClient {
  readonly events: unknown[] = [];
  private readonly reader: LineReader;
  private readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    this.reader = new LineReader(socket);
  }

  async handshake(timeoutMs: number): Promise<unknown> {
    const greeting = await this.reader.next(timeoutMs);
    if (greeting === undefined) throw new Error("QMP: no greeting from QEMU");
    await this.execute("qmp_capabilities");
    return JSON.parse(greeting);
  }

  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 30_000) {
    const message =
      args === undefined ? { execute: command } : { execute: command, arguments: args };
    this.socket.write(`${JSON.stringify(message)}\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = await this.reader.next(Math.max(1, deadline - Date.now()));
      if (line === undefined) throw new Error(`QMP ${command}: no answer`);
      const reply = JSON.parse(line) as QmpReply & { event?: string };
      if (reply.event !== undefined) {
        this.events.push(reply);
        continue;
      }
      if (reply.error !== undefined) {
        throw new Error(`QMP ${command}: ${reply.error.class}: ${reply.error.desc}`);
      }
      return reply.return;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The guest workload's command channel (ttyS1). */
export class GuestChannel {
  readonly transcript: string[] = [];
  private readonly reader: LineReader;
  private readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    this.reader = new LineReader(socket, (line) => this.transcript.push(line));
  }

  /** Waits for `BLV HELLO <release>` and returns the release. */
  async hello(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = await this.reader.next(Math.max(1, deadline - Date.now()));
      if (line === undefined) throw new Error("guest: the workload did not start (no BLV HELLO)");
      const match = /^BLV HELLO (\S+)/.exec(line);
      if (match) return match[1]!;
    }
  }

  /** Sends one command; returns the data blocks it printed (`BLV BEGIN name` .. `BLV END`). */
  async command(text: string, timeoutMs: number): Promise<Map<string, string>> {
    this.socket.write(`${text}\n`);
    const blocks = new Map<string, string>();
    let current: { name: string; lines: string[] } | undefined;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = await this.reader.next(Math.max(1, deadline - Date.now()));
      if (line === undefined) throw new Error(`guest: no answer to "${text}"`);
      if (line.startsWith("BLV BEGIN ")) current = { name: line.slice(10), lines: [] };
      else if (line.startsWith("BLV END ") && current !== undefined) {
        blocks.set(current.name, current.lines.join("\n"));
        current = undefined;
      } else if (current !== undefined) current.lines.push(line);
      else if (line === `BLV OK ${text}`) return blocks;
      else if (line.startsWith(`BLV ERR ${text}`)) throw new Error(`guest: ${line.slice(8)}`);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
