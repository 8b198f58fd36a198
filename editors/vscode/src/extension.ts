// Wiring only: starts `cfgate serve` (daemon.ts, over vscode-languageclient) and hands its
// connection to the protocol layer (client.ts), the inline completion provider (inline.ts),
// the chat participant (chat.ts), sessions (sessions.ts), code actions (actions.ts), the
// status bar item (status.ts) and the commands (commands.ts).

import * as vscode from 'vscode';
import { CfgateClient, formatError } from './client';
import { PARTICIPANT_ID, createChatHandler } from './chat';
import { selectModel, showStatus } from './commands';
import { Daemon } from './daemon';
import { historyMarkdown, pickSession } from './sessions';
import { ActionKind, CfgateCodeActionProvider, askAboutSelection, runAction } from './actions';
import { DaemonStatus, STATUS_COMMAND, statusBarText } from './status';
import { CfgateInlineCompletionProvider, DEFAULT_CONTEXT_CHARS } from './inline';
import { ExtensionSettings, readSettings, settingsChange } from './settings';

function currentSettings(): ExtensionSettings {
    const config = vscode.workspace.getConfiguration('cfgate');
    return readSettings((key) => config.get(key));
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
        const background = shown.error ? 'statusBarItem.errorBackground' : shown.warning ? 'statusBarItem.warningBackground' : undefined;
        statusItem.backgroundColor = background && vscode.ThemeColor ? new vscode.ThemeColor(background) : undefined;
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
                    showErrorMessage: (message) => void vscode.window.showErrorMessage(message),
                },
                cfgate,
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
