// The daemon behind a vscode-languageclient LanguageClient: started, stopped and restarted
// one step at a time, and an `RpcEndpoint` for the protocol layer (client.ts).

import { ChildProcess, spawn } from 'node:child_process';
import * as vscode from 'vscode';
import {
    CloseAction,
    ErrorAction,
    LanguageClient,
    LanguageClientOptions,
    RevealOutputChannelOn,
    ServerOptions,
    State,
} from 'vscode-languageclient/node';
import type { CancellationToken, Disposable, ProgressType } from 'vscode-jsonrpc';
import { RpcEndpoint, formatError } from './client';
import { resolveExecutable } from './executable';
import { ExtensionSettings, replacingSettings } from './settings';
import { DaemonStatus, parseStatus } from './status';

/** The daemon behind a LanguageClient; restartable, and an `RpcEndpoint` for CfgateClient. */
export class Daemon implements RpcEndpoint {
    private client: LanguageClient | undefined;
    private process: ChildProcess | undefined;
    /** The gateway token from VS Code's secret storage (never a setting), sent as the
     *  daemon's `gateway_token` at initialize. */
    gatewayToken: string | undefined;
    private started: Promise<void> = Promise.resolve();

    constructor(
        private readonly output: vscode.OutputChannel,
        private readonly settings: () => ExtensionSettings,
        /** Told the daemon's state: `cfgate/didChangeStatus`, or undefined when it stops. */
        private readonly onStatus: (status: DaemonStatus | undefined) => void = () => undefined,
    ) {}

    start(): void {
        const { path, shared } = this.settings();
        const args = shared ? ['serve', '--shared'] : ['serve'];
        const command = resolveExecutable(path);
        if (!command) {
            this.fail(path, `${path} was not found (looked on the PATH VS Code was started with)`);
            return;
        }
        // Spawned here rather than by the language client, so the process is ours to end
        // even when the client never got it running (e.g. a failed initialize).
        const serverOptions: ServerOptions = () =>
            new Promise<ChildProcess>((resolve, reject) => {
                const child = spawn(command, args, { env: process.env, stdio: ['pipe', 'pipe', 'pipe'] });
                this.process = child;
                child.once('spawn', () => resolve(child));
                child.once('error', reject);
            });
        const clientOptions: LanguageClientOptions = {
            outputChannel: this.output,
            revealOutputChannelOn: RevealOutputChannelOn.Never,
            // Evaluated at each (re)start, so a restart picks up the current settings.
            // The extension brings its own inline completion and chat: the daemon's
            // plain-LSP features (which the LanguageClient would register too) stay off.
            initializationOptions: () => ({
                ...this.settings().daemon,
                ...(this.gatewayToken ? { gateway_token: this.gatewayToken } : {}),
                language_features: false,
            }),
            initializationFailedHandler: (error) => {
                this.output.appendLine(`initialize failed: ${formatError(error)}`);
                return false;
            },
            errorHandler: {
                error: () => ({ action: ErrorAction.Continue }),
                closed: () => {
                    this.onStatus(undefined);
                    return { action: CloseAction.DoNotRestart, message: 'cfgate: the daemon stopped — run "cfgate: Restart Daemon"' };
                },
            },
        };
        const client = new LanguageClient('cfgate', 'cfgate', serverOptions, clientOptions);
        this.client = client;
        client.onNotification('cfgate/didChangeStatus', (params: unknown) => {
            const status = parseStatus(params);
            if (status && this.client === client) {
                this.onStatus(status);
            }
        });
        this.started = client.start().then(
            // Only changes are sent: until the first one, a started daemon is ready.
            () => this.onStatus({ state: 'ready' }),
            (error: unknown) => {
                throw this.failure(path, error instanceof Error ? error.message : String(error));
            },
        );
        this.started.catch(() => undefined);
    }

    private failure(path: string, reason: string): Error {
        const failure = Object.assign(new Error(`could not start \`${path} serve\`: ${reason}`), {
            data: {
                hint: 'install cfgate (`cargo install --path .` in its repository) or set "cfgate.path" to the binary',
            },
        });
        this.output.appendLine(formatError(failure));
        void vscode.window.showErrorMessage(formatError(failure));
        return failure;
    }

    private fail(path: string, reason: string): void {
        this.started = Promise.reject(this.failure(path, reason));
        this.started.catch(() => undefined);
    }

    /** Resolves once a pending stop/start is over and the daemon has started. */
    async ready(): Promise<void> {
        await this.queue;
        return this.started;
    }

    isRunning(): boolean {
        return this.client?.state === State.Running;
    }

    /** Stops and starts run one at a time, in the order asked. */
    private queue: Promise<void> = Promise.resolve();

    private enqueue(work: () => Promise<void>): Promise<void> {
        const next = this.queue.then(work, work);
        this.queue = next.catch(() => undefined);
        return next;
    }

    stop(): Promise<void> {
        return this.enqueue(() => this.doStop());
    }

    /** Starts once `before` has settled (e.g. the secret storage read). */
    startAfter(before: Promise<unknown>): Promise<void> {
        return this.enqueue(async () => {
            await before.catch(() => undefined);
            this.start();
            await this.started.catch(() => undefined);
        });
    }

    restart(): Promise<void> {
        return this.enqueue(async () => {
            await this.doStop();
            this.start();
            await this.started.catch(() => undefined);
        });
    }

    private async doStop(): Promise<void> {
        const client = this.client;
        const child = this.process;
        this.client = undefined;
        this.process = undefined;
        this.onStatus(undefined);
        if (client) {
            await this.started.catch(() => undefined);
            try {
                if (client.isRunning()) {
                    await client.stop(2000); // shutdown + exit
                }
            } catch (error) {
                this.output.appendLine(`stopping cfgate: ${error instanceof Error ? error.message : String(error)}`);
            }
        }
        if (child && child.exitCode === null && child.signalCode === null) {
            // cfgate exits at once when its stdin closes; a kill is the last resort.
            const exited = new Promise<boolean>((resolve) => {
                const timer = setTimeout(() => resolve(false), 2000);
                child.once('exit', () => {
                    clearTimeout(timer);
                    resolve(true);
                });
            });
            child.stdin?.end();
            if (!(await exited)) {
                child.kill();
            }
        }
    }

    /** Sends the current settings as `workspace/didChangeConfiguration`. */
    notifySettings(): Promise<void> {
        return this.enqueue(async () => {
            if (this.client && this.isRunning()) {
                await this.client.sendNotification('workspace/didChangeConfiguration', {
                    settings: { cfgate: replacingSettings(this.settings().daemon) },
                });
            } else {
                // Not running (it failed to start, or stopped): start it with the new settings.
                await this.doStop();
                this.start();
                await this.started.catch(() => undefined);
            }
        });
    }

    sendRequest<R>(method: string, param: any, token?: CancellationToken): Promise<R> {
        const exited = this.process === undefined || this.process.exitCode !== null || this.process.signalCode !== null;
        if (!this.client || this.client.state !== State.Running || exited) {
            return Promise.reject(
                Object.assign(new Error('the daemon is not running'), {
                    data: { hint: 'run "cfgate: Restart Daemon"; the cfgate output channel says why it stopped' },
                }),
            );
        }
        return token ? this.client.sendRequest<R>(method, param, token) : this.client.sendRequest<R>(method, param);
    }

    onProgress<P>(type: ProgressType<P>, token: string | number, handler: (params: P) => void): Disposable {
        if (!this.client) {
            return { dispose: () => undefined };
        }
        return this.client.onProgress(type, token, handler);
    }
}
