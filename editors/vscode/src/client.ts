// The protocol layer: cfgate's methods over any JSON-RPC endpoint that can send requests
// and route `$/progress` by token. It does not import `vscode`, so the same code runs in
// the extension (over vscode-languageclient's LanguageClient) and in the tests (over a
// vscode-jsonrpc MessageConnection to a spawned `cfgate serve`). See docs/protocol.md.

import { CancellationToken, Disposable, ProgressType, ResponseError } from 'vscode-jsonrpc';

/** What the client needs from a connection. Both vscode-jsonrpc's `MessageConnection` and
 *  vscode-languageclient's `LanguageClient` have these members. */
export interface RpcEndpoint {
    sendRequest<R>(method: string, param: any, token?: CancellationToken): Promise<R>;
    onProgress<P>(type: ProgressType<P>, token: string | number, handler: (params: P) => void): Disposable;
}

/** The `cfgate` settings the daemon understands (docs/protocol.md, Settings). The API
 *  token is deliberately absent: it comes from the environment or cfgate's config file. */
export interface DaemonSettings {
    model?: string;
    base_url?: string;
    gateway_id?: string;
    account_id?: string;
    max_tokens?: number;
}

export interface ChatMessage {
    role: string;
    content: string | null;
    [field: string]: unknown;
}

export interface ChatParams {
    messages: ChatMessage[];
    model?: string;
    json_mode?: boolean;
    /** Anything else is passed through to the OpenAI body (max_tokens, temperature, ...). */
    [field: string]: unknown;
}

export interface Usage {
    prompt_tokens?: number;
    completion_tokens?: number;
    total_tokens?: number;
    [field: string]: unknown;
}

export interface ToolCall {
    id?: string;
    type?: string;
    function?: { name?: string; arguments?: string };
    [field: string]: unknown;
}

export interface ChatResult {
    content: string | null;
    reasoning: string | null;
    tool_calls: ToolCall[] | null;
    finish_reason: string | null;
    model: string;
    usage: Usage | null;
    gateway: Record<string, string>;
}

export interface CompleteParams {
    prefix: string;
    suffix?: string;
    language?: string;
    path?: string;
    model?: string;
    max_tokens?: number;
    temperature?: number;
    stop?: string | string[];
}

export interface CompleteResult {
    text: string;
    finish_reason: string | null;
    model: string;
    usage: Usage | null;
}

export interface SessionSummary {
    name: string;
    turns: number;
    /** Unix seconds of the last stored turn. */
    updated: number;
    usage?: Usage;
}

export interface SessionResult extends SessionSummary {
    /** Every stored message in order: each turn's messages, then its answer. */
    messages: ChatMessage[];
}

export interface StatusResult {
    version: string;
    credentials_complete: boolean;
    missing: string[];
    settings_error: string | null;
    account_id: string | null;
    gateway_id: string | null;
    base_url: string | null;
    model: string | null;
    /** Chars of context a completion sends around the cursor (the daemon's setting). */
    completion_context_chars?: number;
    clients?: { name: string | null; version: string | null }[];
    sessions?: SessionSummary[];
    uptime_secs: number;
    requests: { total: number; in_flight: number; failed: number };
    /** The daemon's rate budget of each gateway it has sent to. */
    budgets?: RateBudget[];
}

/** One of `cfgate/status`'s `budgets`: `limit` requests a minute (null: none known). */
export interface RateBudget {
    gateway: string;
    limit: number | null;
    learned: boolean;
    used_last_minute: number;
    /** Set while a cool-down after a 429 runs. */
    cool_down_ms: number | null;
}

/** One model of `cfgate/models`; a field the gateway does not give is null. */
export interface ModelInfo {
    id: string;
    owned_by: string | null;
    context_window: number | null;
    function_calling: boolean | null;
    /** USD per million input tokens (catalog), or the gateway's own `cost_in`. */
    cost_in: number | null;
    /** USD per million output tokens (catalog), or the gateway's own `cost_out`. */
    cost_out: number | null;
    description?: string | null;
}

export interface ModelsResult {
    models: ModelInfo[];
    /** `compat`, `compat+catalog` or `catalog`. */
    source: string;
    cached: boolean;
    age_secs: number;
}

/** One `report` of a `$/progress` stream: exactly one field is set. `message` is a note
 *  for the user (e.g. "rate limited: waiting 3 s"), never part of the answer. */
export interface Piece {
    content?: string;
    reasoning?: string;
    tool_calls?: unknown[];
    message?: string;
}

/** The `value` of a `$/progress` notification as cfgate sends it. */
export interface ProgressValue extends Piece {
    kind: 'begin' | 'report' | 'end';
    title?: string;
}

/** JSON-RPC error codes the extension treats specially. */
export const ErrorCodes = {
    RequestCancelled: -32800,
    ConnectionInactive: -32099,
    InvalidParams: -32602,
    MissingCredentials: 1001,
    InvalidSetting: 1002,
    InvalidModel: 1003,
} as const;

/** `data` of cfgate's own errors (codes 1001..1025). */
export interface ErrorData {
    kind?: string;
    status?: number;
    upstream_code?: number;
    message?: string;
    hint?: string;
    retryable?: boolean;
    partial_content?: string;
}

export interface ClientOptions {
    /** Awaited before every request, e.g. until the language client has started. */
    ready?: () => Promise<void>;
}

const progressType = new ProgressType<ProgressValue>();
let tokenCounter = 0;

/** A fresh `workDoneToken`, unique within this process. */
export function newProgressToken(prefix = 'cfgate'): string {
    tokenCounter += 1;
    return `${prefix}-${process.pid}-${Date.now().toString(36)}-${tokenCounter}`;
}

export class CfgateClient {
    constructor(private readonly endpoint: RpcEndpoint, private readonly options: ClientOptions = {}) {}

    /** `cfgate/chat`. With `onPiece` the answer streams: every `report` is passed on as it
     *  arrives, and all of them arrive before the promise settles. */
    async chat(params: ChatParams, onPiece?: (piece: Piece) => void, token?: CancellationToken): Promise<ChatResult> {
        return this.streamed<ChatResult>('cfgate/chat', params, onPiece, token);
    }

    /** `cfgate/complete`: the text to insert between `prefix` and `suffix`. */
    async complete(params: CompleteParams, onPiece?: (piece: Piece) => void, token?: CancellationToken): Promise<CompleteResult> {
        return this.streamed<CompleteResult>('cfgate/complete', params, onPiece, token);
    }

    /** `cfgate/status`. */
    async status(token?: CancellationToken): Promise<StatusResult> {
        await this.options.ready?.();
        return this.send<StatusResult>('cfgate/status', {}, token);
    }

    /** `cfgate/models`: the models the gateway offers (the daemon caches the list for 10
     *  minutes; `refresh` fetches it again). */
    async models(refresh = false, token?: CancellationToken): Promise<ModelsResult> {
        await this.options.ready?.();
        return this.send<ModelsResult>('cfgate/models', refresh ? { refresh: true } : {}, token);
    }

    /** `cfgate/sessions`: the stored conversations, most recently updated first. */
    async sessions(token?: CancellationToken): Promise<SessionSummary[]> {
        await this.options.ready?.();
        const result = await this.send<{ sessions: SessionSummary[] }>('cfgate/sessions', {}, token);
        return result?.sessions ?? [];
    }

    /** `cfgate/session`: one conversation with every stored message. */
    async session(name: string, token?: CancellationToken): Promise<SessionResult> {
        await this.options.ready?.();
        return this.send<SessionResult>('cfgate/session', { name }, token);
    }

    /** vscode-jsonrpc takes a trailing `undefined` for a second positional parameter and
     *  would send `[params, null]`: pass the token only when there is one. */
    private send<R>(method: string, params: object, token: CancellationToken | undefined): Promise<R> {
        return token ? this.endpoint.sendRequest<R>(method, params, token) : this.endpoint.sendRequest<R>(method, params);
    }

    private async streamed<R>(
        method: string,
        params: object,
        onPiece: ((piece: Piece) => void) | undefined,
        token: CancellationToken | undefined,
    ): Promise<R> {
        await this.options.ready?.();
        if (token?.isCancellationRequested) {
            throw new ResponseError(ErrorCodes.RequestCancelled, 'cancelled before it was sent');
        }
        if (!onPiece) {
            return this.send<R>(method, params, token);
        }
        const workDoneToken = newProgressToken();
        const subscription = this.endpoint.onProgress(progressType, workDoneToken, (value) => {
            if (value?.kind !== 'report') {
                return;
            }
            const piece: Piece = {};
            if (typeof value.content === 'string') {
                piece.content = value.content;
            } else if (typeof value.reasoning === 'string') {
                piece.reasoning = value.reasoning;
            } else if (Array.isArray(value.tool_calls)) {
                piece.tool_calls = value.tool_calls;
            } else if (typeof value.message === 'string') {
                piece.message = value.message;
            } else {
                return;
            }
            try {
                onPiece(piece);
            } catch {
                // A consumer's failure must not break the stream's bookkeeping.
            }
        });
        try {
            return await this.send<R>(method, { ...params, workDoneToken }, token);
        } finally {
            subscription.dispose();
        }
    }
}

function errorParts(error: unknown): { code?: number; message: string; data?: ErrorData } {
    if (error instanceof ResponseError) {
        return { code: error.code, message: error.message, data: error.data as ErrorData | undefined };
    }
    if (error && typeof error === 'object') {
        const e = error as { code?: unknown; message?: unknown; data?: unknown };
        return {
            code: typeof e.code === 'number' ? e.code : undefined,
            message: typeof e.message === 'string' ? e.message : String(error),
            data: e.data && typeof e.data === 'object' ? (e.data as ErrorData) : undefined,
        };
    }
    return { message: String(error) };
}

/** `true` for the answer to a cancelled request (-32800). */
export function isCancellation(error: unknown): boolean {
    return errorParts(error).code === ErrorCodes.RequestCancelled;
}

/** The hint of a cfgate error, if it has one. */
export function errorHint(error: unknown): string | undefined {
    const hint = errorParts(error).data?.hint;
    return typeof hint === 'string' && hint.trim() !== '' ? hint : undefined;
}

/** "cfgate: message — hint" (without " — hint" when there is none). */
export function formatError(error: unknown): string {
    const { message, data } = errorParts(error);
    const text = message.replace(/^cfgate:\s*/, '').trim() || 'unknown error';
    const hint = typeof data?.hint === 'string' ? data.hint.trim() : '';
    return hint ? `cfgate: ${text} — ${hint}` : `cfgate: ${text}`;
}
