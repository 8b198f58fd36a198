// Wiring only: starts `cfgate serve` with vscode-languageclient and hands its connection to
// the protocol layer (client.ts), the inline completion provider (inline.ts), the chat
// participant (chat.ts) and the commands (commands.ts).

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
import { CfgateClient, RpcEndpoint, formatError } from './client';
import { PARTICIPANT_ID, createChatHandler } from './chat';
import { selectModel, showStatus } from './commands';
import { historyMarkdown, pickSession } from './sessions';
import { ActionKind, CfgateCodeActionProvider, askAboutSelection, runAction } from './actions';
import { DaemonStatus, STATUS_COMMAND, parseStatus, statusBarText } from './status';
import { CfgateInlineCompletionProvider, DEFAULT_CONTEXT_CHARS } from './inline';
import { resolveExecutable } from './executable';
import { ExtensionSettings, readSettings, settingsChange } from './settings';

function currentSettings(): ExtensionSettings {
    const config = vscode.workspace.getConfiguration('cfgate');
    return readSettings((key) => config.get(key));
}

/** The daemon behind a LanguageClient; restartable, and an `RpcEndpoint` for CfgateClient. */
class Daemon implements RpcEndpoint {
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
                    settings: { cfgate: this.settings().daemon },
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

let daemon: Daemon | undefined;

export function activate(context: vscode.ExtensionContext): void {
    const output = vscode.window.createOutputChannel('cfgate');
    let settings = currentSettings();
    // The daemon's state, as Neovim's statusline and Emacs's mode line show it.
    const statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment?.Right, 100);
    statusItem.command = STATUS_COMMAND;
    const showDaemonStatus = (status: DaemonStatus | undefined) => {
        const shown = statusBarText(status);
        statusItem.text = shown.text;
        statusItem.tooltip = shown.tooltip;
        statusItem.backgroundColor = shown.error && vscode.ThemeColor ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
        statusItem.show();
    };
    showDaemonStatus(undefined);
    daemon = new Daemon(output, () => settings, showDaemonStatus);
    const d = daemon;
    // The gateway token lives in VS Code's secret storage (cfgate: Set Gateway Token).
    const GATEWAY_TOKEN_KEY = 'cfgate.gatewayToken';
    void d.startAfter(
        Promise.resolve(context.secrets?.get(GATEWAY_TOKEN_KEY)).then((token) => {
            d.gatewayToken = token || undefined;
        }),
    );
    const cfgate = new CfgateClient(d, { ready: () => d.ready() });
    // The daemon's completion_context_chars, read after each start and settings change.
    let contextChars = DEFAULT_CONTEXT_CHARS;
    const readContextChars = () =>
        cfgate
            .status()
            .then((status) => {
                if (typeof status.completion_context_chars === 'number' && status.completion_context_chars > 0) {
                    contextChars = status.completion_context_chars;
                }
            })
            .catch(() => undefined);
    void readContextChars();

    // The session @cfgate continues: chosen for this workspace, else the setting.
    const SESSION_KEY = 'cfgate.session';
    const currentSession = (): string | undefined => {
        const chosen = context.workspaceState?.get<string>(SESSION_KEY);
        return (chosen !== undefined ? chosen : settings.chatSession) || undefined;
    };

    // Failures of background work (completions) go to the output channel; a notification
    // only when the error differs from the last one shown (typing on is never interrupted
    // by the same error again; the status bar item shows the state meanwhile).
    let lastShown = '';
    const reportError = (message: string) => {
        output.appendLine(message);
        if (message !== lastShown) {
            lastShown = message;
            void vscode.window.showWarningMessage(message);
        }
    };

    const actionUi = {
        showExplanation: async (text: string) => {
            const document = await vscode.workspace.openTextDocument({ language: 'markdown', content: text });
            await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn?.Beside, preview: true });
        },
        replace: async (document: vscode.TextDocument, range: vscode.Range, text: string, version: number) => {
            if (document.version !== version) {
                return false;
            }
            const edit = new vscode.WorkspaceEdit();
            edit.replace(document.uri, range, text);
            return vscode.workspace.applyEdit(edit);
        },
        showErrorMessage: (message: string) => {
            output.appendLine(message);
            void vscode.window.showErrorMessage(message);
        },
    };
    const runOnSelection = async (kind: ActionKind, uri?: vscode.Uri, range?: vscode.Range) => {
        const editor = vscode.window.activeTextEditor;
        const document = uri ? await vscode.workspace.openTextDocument(uri) : editor?.document;
        const target = range ?? editor?.selection;
        if (!document || !target || target.isEmpty) {
            void vscode.window.showInformationMessage('cfgate: select the code first');
            return undefined;
        }
        return runAction(kind, cfgate, document, target, actionUi);
    };

    context.subscriptions.push(
        output,
        vscode.languages.registerInlineCompletionItemProvider(
            { pattern: '**' },
            new CfgateInlineCompletionProvider({
                client: cfgate,
                settings: () => settings.completion,
                vs: { InlineCompletionItem: vscode.InlineCompletionItem, Range: vscode.Range },
                onError: reportError,
                contextChars: () => contextChars,
                relativePath: (document) => vscode.workspace.asRelativePath?.(document.uri, false),
            }),
        ),
        vscode.commands.registerCommand('cfgate.selectModel', () => {
            const config = vscode.workspace.getConfiguration('cfgate');
            const inspected = config.inspect<string>('model');
            const target =
                inspected?.workspaceFolderValue !== undefined || inspected?.workspaceValue !== undefined
                    ? vscode.ConfigurationTarget.Workspace
                    : vscode.ConfigurationTarget.Global;
            return selectModel(
                {
                    showQuickPick: (items, options) => vscode.window.showQuickPick(items, options),
                    showInputBox: (options) => vscode.window.showInputBox(options),
                    updateModel: (model) => config.update('model', model, target),
                    showInformationMessage: (message) => void vscode.window.showInformationMessage(message),
                },
                settings.daemon.model,
            );
        }),
        vscode.commands.registerCommand('cfgate.status', () => {
            output.show(true);
            return showStatus(cfgate, {
                appendLine: (line) => output.appendLine(line),
                showInformationMessage: (message) => void vscode.window.showInformationMessage(message),
                showWarningMessage: (message) => void vscode.window.showWarningMessage(message),
                showErrorMessage: (message) => void vscode.window.showErrorMessage(message),
            });
        }),
        vscode.commands.registerCommand('cfgate.restart', () => d.restart().then(readContextChars)),
        statusItem,
        vscode.languages.registerCodeActionsProvider(
            { pattern: '**' },
            new CfgateCodeActionProvider({ client: cfgate, vs: { CodeAction: vscode.CodeAction, CodeActionKind: vscode.CodeActionKind } }),
            { providedCodeActionKinds: [vscode.CodeActionKind.Empty, vscode.CodeActionKind.QuickFix, vscode.CodeActionKind.RefactorRewrite] },
        ),
        vscode.commands.registerCommand('cfgate.askSelection', async () => {
            const editor = vscode.window.activeTextEditor;
            if (!editor) {
                void vscode.window.showInformationMessage('cfgate: open a file first');
                return undefined;
            }
            const range = editor.selection.isEmpty
                ? new vscode.Range(editor.document.positionAt(0), editor.document.positionAt(editor.document.getText().length))
                : editor.selection;
            const instruction = await vscode.window.showInputBox({ prompt: 'cfgate: ask about the selection (the whole file without one)' });
            if (!instruction?.trim()) {
                return undefined;
            }
            return askAboutSelection(cfgate, editor.document, range, instruction, actionUi);
        }),
        vscode.commands.registerCommand('cfgate.explainSelection', (uri?: vscode.Uri, range?: vscode.Range) => runOnSelection('explain', uri, range)),
        vscode.commands.registerCommand('cfgate.fixSelection', (uri?: vscode.Uri, range?: vscode.Range) => runOnSelection('fix', uri, range)),
        vscode.commands.registerCommand('cfgate.addDocsSelection', (uri?: vscode.Uri, range?: vscode.Range) => runOnSelection('addDocs', uri, range)),
        vscode.commands.registerCommand('cfgate.setGatewayToken', async () => {
            const token = await vscode.window.showInputBox({
                prompt: 'cfgate: the AI Gateway token (cf-aig-authorization), kept in VS Code\'s secret storage; empty removes it',
                password: true,
                ignoreFocusOut: true,
            });
            if (token === undefined || !context.secrets) {
                return undefined;
            }
            if (token.trim() === '') {
                await context.secrets.delete(GATEWAY_TOKEN_KEY);
                d.gatewayToken = undefined;
            } else {
                await context.secrets.store(GATEWAY_TOKEN_KEY, token.trim());
                d.gatewayToken = token.trim();
            }
            // initialize carries it; didChangeConfiguration could not take it away again.
            await d.restart();
            await readContextChars();
            void vscode.window.showInformationMessage(d.gatewayToken ? 'cfgate: gateway token stored' : 'cfgate: gateway token removed');
            return d.gatewayToken !== undefined;
        }),
        vscode.commands.registerCommand('cfgate.chooseSession', async () => {
            try {
                const name = await pickSession(
                    cfgate,
                    {
                        showQuickPick: (items, options) => vscode.window.showQuickPick(items, options),
                        showInputBox: (options) => vscode.window.showInputBox(options),
                    },
                    currentSession(),
                );
                if (name === undefined) {
                    return undefined;
                }
                await context.workspaceState.update(SESSION_KEY, name);
                if (name === '') {
                    return name;
                }
                // The stored turns, whichever client made them, to read before going on in @cfgate.
                const session = await cfgate.session(name);
                const document = await vscode.workspace.openTextDocument({
                    language: 'markdown',
                    content: historyMarkdown(name, session.messages ?? []),
                });
                await vscode.window.showTextDocument(document, { preview: true });
                return name;
            } catch (error) {
                const message = formatError(error);
                output.appendLine(message);
                void vscode.window.showErrorMessage(message);
                return undefined;
            }
        }),
        vscode.workspace.onDidChangeConfiguration(async (event) => {
            if (!event.affectsConfiguration('cfgate')) {
                return;
            }
            const next = currentSettings();
            const change = settingsChange(settings, next);
            settings = next;
            try {
                if (change === 'restart') {
                    await d.restart();
                } else if (change === 'notify') {
                    await d.notifySettings();
                }
                await readContextChars();
            } catch (error) {
                reportError(formatError(error));
            }
        }),
    );

    // Hosts without the chat API (or without a chat view) still get completions.
    if (typeof vscode.chat?.createChatParticipant === 'function') {
        const participant = vscode.chat.createChatParticipant(
            PARTICIPANT_ID,
            createChatHandler({ client: cfgate, session: currentSession, onError: (message) => output.appendLine(message) }),
        );
        participant.iconPath = new vscode.ThemeIcon('cloud');
        context.subscriptions.push(participant);
    }
}

export function deactivate(): Thenable<void> | undefined {
    const d = daemon;
    daemon = undefined;
    return d?.stop();
}
