// Test harness: the real `fake-gateway` and `cfgate serve` binaries, connected with
// vscode-jsonrpc exactly as the extension's protocol layer expects. (Kept outside test/ so
// `node --test out/test/` does not run it as a test file.)

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { MessageConnection, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import { CfgateClient, DaemonSettings } from '../src/client';

const repoRoot = path.resolve(__dirname, '..', '..', '..', '..');

export const CFGATE_BIN = process.env.CFGATE_BIN || path.join(repoRoot, 'target', 'debug', 'cfgate');
export const FAKE_GATEWAY_BIN = process.env.FAKE_GATEWAY_BIN || path.join(repoRoot, 'target', 'debug', 'fake-gateway');

/** Generous: the machine may be loaded by parallel builds. */
export const DEADLINE_MS = 30_000;

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every 25 ms until it returns a truthy value or `deadlineMs` passes. */
export async function waitFor<T>(what: string, probe: () => Promise<T> | T, deadlineMs = DEADLINE_MS): Promise<NonNullable<T>> {
    const end = Date.now() + deadlineMs;
    let last: T;
    for (;;) {
        last = await probe();
        if (last) {
            return last as NonNullable<T>;
        }
        if (Date.now() > end) {
            throw new Error(`timed out after ${deadlineMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
        }
        await sleep(25);
    }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout;
    return Promise.race([
        promise.finally(() => clearTimeout(timer)),
        new Promise<T>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
        }),
    ]);
}

export interface FakeStats {
    connections_accepted: number;
    streams_dropped: number;
    requests: number;
}

export interface RecordedRequest {
    method: string;
    path: string;
    headers: [string, string][];
    body: any;
    raw_body: string;
}

export class FakeGateway {
    private constructor(
        readonly process: ChildProcess,
        readonly url: string,
    ) {}

    static async start(): Promise<FakeGateway> {
        const child = spawn(FAKE_GATEWAY_BIN, [], { stdio: ['pipe', 'pipe', 'inherit'] });
        const url = await withTimeout(
            new Promise<string>((resolve, reject) => {
                const lines = readline.createInterface({ input: child.stdout! });
                lines.on('line', (line) => {
                    const m = /^FAKE_GATEWAY_URL=(\S+)$/.exec(line.trim());
                    if (m) {
                        lines.close();
                        resolve(m[1]);
                    }
                });
                child.once('error', reject);
                child.once('exit', (code) => reject(new Error(`fake-gateway exited (${code}) before printing its URL`)));
            }),
            DEADLINE_MS,
            'fake-gateway start',
        );
        return new FakeGateway(child, url);
    }

    /** What cfgate's `base_url` should be. */
    get baseUrl(): string {
        return `${this.url}/v1/acc/gw/compat`;
    }

    private async call(method: string, route: string, body?: unknown): Promise<any> {
        const res = await fetch(`${this.url}${route}`, {
            method,
            headers: body === undefined ? undefined : { 'content-type': 'application/json' },
            body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        if (!res.ok) {
            throw new Error(`${method} ${route}: HTTP ${res.status}: ${text}`);
        }
        return text ? JSON.parse(text) : undefined;
    }

    script(script: Record<string, unknown>): Promise<void> {
        return this.call('POST', '/__fake/script', script);
    }

    reset(): Promise<void> {
        return this.call('POST', '/__fake/reset');
    }

    requests(): Promise<RecordedRequest[]> {
        return this.call('GET', '/__fake/requests');
    }

    stats(): Promise<FakeStats> {
        return this.call('GET', '/__fake/stats');
    }

    /** Closes its stdin (its signal to exit) and waits for it. */
    async stop(): Promise<void> {
        if (this.process.exitCode !== null || this.process.signalCode !== null) {
            return;
        }
        const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
        this.process.stdin!.end();
        await withTimeout(exited, DEADLINE_MS, 'fake-gateway exit').catch(() => this.process.kill('SIGKILL'));
    }
}

/** Every cfgate process the tests started, to check none is left behind. */
export const startedDaemons: ChildProcess[] = [];

export interface DaemonOptions {
    /** initializationOptions (default: base_url of `fake`). */
    settings?: DaemonSettings | Record<string, unknown>;
    /** Extra environment; `null` removes a variable. */
    env?: Record<string, string | null>;
}

export class Daemon {
    readonly stderr: string[] = [];
    readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

    private constructor(
        readonly process: ChildProcess,
        readonly connection: MessageConnection,
        readonly client: CfgateClient,
        private readonly home: string,
    ) {
        this.exited = new Promise((resolve) => {
            if (process.exitCode !== null || process.signalCode !== null) {
                resolve({ code: process.exitCode, signal: process.signalCode });
            } else {
                process.once('exit', (code, signal) => resolve({ code, signal }));
            }
        });
    }

    /** Spawns `cfgate serve` in a private HOME, connects, and runs initialize/initialized. */
    static async start(fake: FakeGateway | undefined, options: DaemonOptions = {}): Promise<Daemon> {
        const home = fs.mkdtempSync(path.join(os.tmpdir(), 'cfgate-vscode-test-'));
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries(process.env)) {
            if (v !== undefined && !k.startsWith('CLOUDFLARE_') && !k.startsWith('CFGATE_') && !k.startsWith('XDG_')) {
                env[k] = v;
            }
        }
        Object.assign(env, {
            HOME: home,
            XDG_CONFIG_HOME: path.join(home, 'config'),
            XDG_STATE_HOME: path.join(home, 'state'),
            XDG_DATA_HOME: path.join(home, 'data'),
            XDG_CACHE_HOME: path.join(home, 'cache'),
            CLOUDFLARE_API_TOKEN: 'test-token',
        });
        for (const [k, v] of Object.entries(options.env ?? {})) {
            if (v === null) {
                delete env[k];
            } else {
                env[k] = v;
            }
        }
        const child = spawn(CFGATE_BIN, ['serve'], { stdio: ['pipe', 'pipe', 'pipe'], env });
        startedDaemons.push(child);
        const connection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
        // The tests close stdin themselves; a write after that must not crash the runner.
        child.stdin!.on('error', () => undefined);
        const daemon = new Daemon(child, connection, new CfgateClient(connection), home);
        child.stderr!.setEncoding('utf8');
        child.stderr!.on('data', (chunk: string) => daemon.stderr.push(chunk));
        connection.listen();
        const settings = options.settings ?? (fake ? { base_url: fake.baseUrl } : {});
        await withTimeout(
            connection.sendRequest('initialize', {
                processId: process.pid,
                clientInfo: { name: 'cfgate-vscode-tests' },
                rootUri: null,
                capabilities: {},
                initializationOptions: settings,
            }),
            DEADLINE_MS,
            'initialize',
        ).then((result) => {
            daemon.initializeResult = result;
        });
        await connection.sendNotification('initialized', {});
        return daemon;
    }

    initializeResult: unknown;

    /** Disposes the connection and closes stdin; resolves with the exit status. */
    async close(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
        this.connection.dispose();
        this.process.stdin!.end();
        try {
            return await withTimeout(this.exited, DEADLINE_MS, 'cfgate exit after stdin closed');
        } catch (error) {
            this.process.kill('SIGKILL');
            throw error;
        } finally {
            fs.rmSync(this.home, { recursive: true, force: true });
        }
    }
}

/** Ends every daemon still running (stdin closed, then SIGKILL after the deadline);
 *  returns the pids that had been left running. */
export async function reapDaemons(): Promise<number[]> {
    const left = startedDaemons.filter(alive);
    await Promise.all(
        left.map(async (child) => {
            const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
            child.stdin?.end();
            await withTimeout(exited, 5000, 'exit').catch(() => child.kill('SIGKILL'));
        }),
    );
    return left.map((c) => c.pid ?? -1);
}

/** True if the process is still running. */
export function alive(child: ChildProcess): boolean {
    return child.exitCode === null && child.signalCode === null;
}
