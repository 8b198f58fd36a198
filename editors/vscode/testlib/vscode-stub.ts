// A small fake of the `vscode` module, installed with Module._resolveFilename so that the
// real src/extension.ts and the real vscode-languageclient run in plain node. It implements
// what activation, the language client's start/stop and the extension's features touch;
// everything it records is exposed for the tests. Unknown members are `undefined`, as in an
// older VS Code, which makes the language client skip the feature.

import * as path from 'node:path';
import { CancellationTokenSource as RpcTokenSource } from 'vscode-jsonrpc/node';
import { InlineCompletionItem, MarkdownString, Position, Range } from './fakes';

const Module = require('node:module');

export class Disposable {
    constructor(private readonly callOnDispose: () => unknown) {}
    static from(...items: { dispose(): unknown }[]): Disposable {
        return new Disposable(() => items.forEach((i) => i.dispose()));
    }
    dispose(): void {
        this.callOnDispose();
    }
}

export class EventEmitter<T> {
    private readonly listeners = new Set<(e: T) => unknown>();
    readonly event = (listener: (e: T) => unknown, thisArg?: unknown, disposables?: Disposable[]) => {
        const bound = thisArg ? listener.bind(thisArg) : listener;
        this.listeners.add(bound);
        const d = new Disposable(() => this.listeners.delete(bound));
        disposables?.push(d);
        return d;
    };
    fire(e: T): void {
        for (const l of [...this.listeners]) {
            l(e);
        }
    }
    dispose(): void {
        this.listeners.clear();
    }
}

export class CancellationError extends Error {
    constructor() {
        super('Canceled');
        this.name = 'Canceled';
    }
}

export class CancellationTokenSource extends RpcTokenSource {}

export class ThemeIcon {
    constructor(readonly id: string) {}
}

export class ThemeColor {
    constructor(readonly id: string) {}
}

export class Uri {
    private constructor(
        readonly scheme: string,
        readonly fsPath: string,
    ) {}
    static file(p: string): Uri {
        return new Uri('file', p);
    }
    static parse(value: string): Uri {
        return value.startsWith('file://') ? new Uri('file', value.slice(7)) : new Uri(value.split(':')[0], value);
    }
    get path(): string {
        return this.fsPath;
    }
    toString(): string {
        return `${this.scheme}://${this.fsPath}`;
    }
}

export enum ConfigurationTarget {
    Global = 1,
    Workspace = 2,
    WorkspaceFolder = 3,
}

/** What the fake records, for assertions. */
export const recorded = {
    messages: [] as { level: 'info' | 'warning' | 'error'; message: string }[],
    output: [] as string[],
    commands: new Map<string, (...args: unknown[]) => unknown>(),
    inlineProviders: [] as { selector: unknown; provider: any }[],
    participants: [] as { id: string; handler: (...args: any[]) => any; iconPath?: unknown }[],
    quickPick: undefined as undefined | ((items: any[]) => any),
    inputBox: undefined as undefined | ((options: any) => any),
    codeActionProviders: [] as { selector: unknown; provider: any; metadata: unknown }[],
    statusItems: [] as { text: string; tooltip: string; command: unknown; backgroundColor?: { id: string }; shown: boolean }[],
};

/** `cfgate.*` settings as the user would have them. */
export const settings = new Map<string, unknown>();
const configurationChanged = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();

/** Changes settings and fires onDidChangeConfiguration, as the settings editor would. */
export function changeSettings(values: Record<string, unknown>): void {
    for (const [k, v] of Object.entries(values)) {
        if (v === undefined) {
            settings.delete(k);
        } else {
            settings.set(k, v);
        }
    }
    configurationChanged.fire({ affectsConfiguration: (section: string) => section === 'cfgate' || section.startsWith('cfgate.') });
}

function configuration(section?: string) {
    const full = (key: string) => (section ? `${section}.${key}` : key);
    return {
        get: <T>(key: string, defaultValue?: T) => (settings.has(full(key)) ? (settings.get(full(key)) as T) : defaultValue),
        has: (key: string) => settings.has(full(key)),
        inspect: (key: string) => ({ key: full(key), globalValue: settings.get(full(key)) }),
        update: async (key: string, value: unknown) => {
            changeSettings({ [full(key)]: value });
        },
    };
}

function outputChannel(name: string) {
    const write = (text: string) => recorded.output.push(`[${name}] ${text}`);
    return {
        name,
        append: write,
        appendLine: write,
        replace: write,
        clear: () => undefined,
        show: () => undefined,
        hide: () => undefined,
        dispose: () => undefined,
        // LogOutputChannel members (vscode-languageclient uses them for tracing).
        logLevel: 2,
        onDidChangeLogLevel: new EventEmitter<number>().event,
        trace: write,
        debug: write,
        info: write,
        warn: write,
        error: (e: unknown) => write(String(e)),
    };
}

function message(level: 'info' | 'warning' | 'error') {
    return async (text: string) => {
        recorded.messages.push({ level, message: text });
        return undefined;
    };
}

const never = new EventEmitter<any>().event;

/** Classes vscode-languageclient subclasses when it loads; never constructed here. */
const baseClasses = Object.fromEntries(
    ['SymbolInformation', 'DocumentLink', 'InlayHint', 'Diagnostic', 'CallHierarchyItem', 'CodeLens', 'CompletionItem', 'TypeHierarchyItem', 'CodeAction'].map(
        (name) => [name, class {}],
    ),
);

/** Enum-like namespaces the language client maps at construction; each member is its name. */
const enums = Object.fromEntries(
    [
        'CodeActionKind', 'CodeActionTriggerKind', 'CompletionItemKind', 'CompletionItemTag', 'CompletionTriggerKind',
        'DiagnosticSeverity', 'DiagnosticTag', 'DocumentHighlightKind', 'FileType', 'FoldingRangeKind', 'NotebookCellKind',
        'ProgressLocation', 'SignatureHelpTriggerKind', 'SymbolKind', 'SymbolTag', 'TextDocumentSaveReason',
    ].map((name) => [name, new Proxy({}, { get: (_, member) => `${name}.${String(member)}` })]),
);

export const vscodeStub = {
    ...baseClasses,
    ...enums,
    version: '1.90.0',
    Disposable,
    EventEmitter,
    CancellationError,
    CancellationTokenSource,
    ThemeIcon,
    ThemeColor,
    Uri,
    ConfigurationTarget,
    Position,
    Range,
    InlineCompletionItem,
    MarkdownString,
    env: { appName: 'Fake Code', language: 'en', machineId: 'test', sessionId: 'test', openExternal: async () => false },
    workspace: {
        workspaceFolders: undefined,
        textDocuments: [],
        getConfiguration: configuration,
        onDidChangeConfiguration: configurationChanged.event,
        onDidOpenTextDocument: never,
        onDidCloseTextDocument: never,
        onDidChangeTextDocument: never,
        onDidSaveTextDocument: never,
        onWillSaveTextDocument: never,
        onDidChangeWorkspaceFolders: never,
        getWorkspaceFolder: () => undefined,
        asRelativePath: (uri: { fsPath?: string } | string) => (typeof uri === 'string' ? uri : uri.fsPath ?? ''),
        createFileSystemWatcher: () => ({ onDidCreate: never, onDidChange: never, onDidDelete: never, dispose: () => undefined }),
    },
    window: {
        createOutputChannel: outputChannel,
        showInformationMessage: message('info'),
        showWarningMessage: message('warning'),
        showErrorMessage: message('error'),
        showQuickPick: async (items: any[]) => recorded.quickPick?.(items),
        showInputBox: async (options: unknown) => recorded.inputBox?.(options),
        activeTextEditor: undefined,
        visibleTextEditors: [],
        onDidChangeActiveTextEditor: never,
        onDidChangeVisibleTextEditors: never,
        createStatusBarItem: () => {
            const item = { text: '', tooltip: '', command: undefined as unknown, backgroundColor: undefined as ThemeColor | undefined, shown: false, show: () => void (item.shown = true), hide: () => void (item.shown = false), dispose: () => undefined };
            recorded.statusItems.push(item);
            return item;
        },
    },
    languages: {
        registerInlineCompletionItemProvider: (selector: unknown, provider: unknown) => {
            recorded.inlineProviders.push({ selector, provider });
            return new Disposable(() => undefined);
        },
        registerCodeActionsProvider: (selector: unknown, provider: unknown, metadata: unknown) => {
            recorded.codeActionProviders.push({ selector, provider, metadata });
            return new Disposable(() => undefined);
        },
        createDiagnosticCollection: () => ({ set: () => undefined, delete: () => undefined, clear: () => undefined, dispose: () => undefined }),
        match: () => 0,
    },
    commands: {
        registerCommand: (id: string, handler: (...args: unknown[]) => unknown) => {
            recorded.commands.set(id, handler);
            return new Disposable(() => recorded.commands.delete(id));
        },
        executeCommand: async (id: string, ...args: unknown[]) => recorded.commands.get(id)?.(...args),
    },
    chat: {
        createChatParticipant: (id: string, handler: (...args: any[]) => any) => {
            const participant = { id, handler, iconPath: undefined as unknown, dispose: () => undefined };
            recorded.participants.push(participant);
            return participant;
        },
    },
};

/** Makes `require('vscode')` return the stub. */
export function installVscodeStub(): void {
    const stubPath = path.join(__dirname, '__vscode_stub__.js');
    require.cache[stubPath] = { id: stubPath, filename: stubPath, loaded: true, exports: vscodeStub } as any;
    const original = Module._resolveFilename;
    Module._resolveFilename = function (request: string, ...rest: unknown[]) {
        if (request === 'vscode') {
            return stubPath;
        }
        return original.call(this, request, ...rest);
    };
}

export function fakeExtensionContext() {
    const subscriptions: { dispose(): unknown }[] = [];
    return {
        subscriptions,
        extensionPath: path.join(__dirname, '..', '..'),
        globalState: { get: () => undefined, update: async () => undefined },
        workspaceState: { get: () => undefined, update: async () => undefined },
        secrets: {
            values: new Map<string, string>(),
            async get(key: string) {
                return this.values.get(key);
            },
            async store(key: string, value: string) {
                this.values.set(key, value);
            },
            async delete(key: string) {
                this.values.delete(key);
            },
        },
        dispose: () => subscriptions.forEach((s) => s.dispose()),
    };
}
