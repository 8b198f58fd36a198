// The `@cfgate` chat participant: streams `cfgate/chat` into the chat view. Only types come
// from `vscode`, so tests drive the handler with plain objects.

import type * as vscode from 'vscode';
import type { CfgateClient, ChatMessage, ChatResult } from './client';
import { formatError, isCancellation } from './client';

export const PARTICIPANT_ID = 'cfgate.chat';

export const SYSTEM_PROMPT =
    'You are a helpful programming assistant inside Visual Studio Code. Answer in Markdown; ' +
    'put code in fenced code blocks with a language tag.';

export interface ChatDeps {
    client: Pick<CfgateClient, 'chat'>;
    /** The session `@cfgate` continues (`cfgate.chooseSession`, else `cfgate.chat.session`),
     *  or undefined: history from this chat's earlier turns only. */
    session?: () => string | undefined;
    /** Told about failures (not about cancellations). */
    onError?: (message: string, error: unknown) => void;
}

type Turn = vscode.ChatRequestTurn | vscode.ChatResponseTurn;

function isRequestTurn(turn: Turn): turn is vscode.ChatRequestTurn {
    return typeof (turn as vscode.ChatRequestTurn).prompt === 'string';
}

/** The markdown text of a response turn (other parts, like anchors, are left out). */
export function responseText(turn: vscode.ChatResponseTurn): string {
    let text = '';
    for (const part of turn.response ?? []) {
        const value = (part as { value?: unknown }).value;
        if (typeof value === 'string') {
            text += value;
        } else if (value && typeof (value as { value?: unknown }).value === 'string') {
            // ChatResponseMarkdownPart: value is a MarkdownString.
            text += (value as vscode.MarkdownString).value;
        }
    }
    return text;
}

/** OpenAI messages for the request: a system prompt, this participant's earlier turns
 *  from `context.history`, then the new prompt. With a session, only the system prompt
 *  and the new prompt: the daemon puts the session's stored turns (every client's) in
 *  front, and sending them again would store each turn twice. */
export function buildMessages(request: vscode.ChatRequest, context: vscode.ChatContext, session?: string): ChatMessage[] {
    const messages: ChatMessage[] = [{ role: 'system', content: SYSTEM_PROMPT }];
    if (session) {
        messages.push({ role: 'user', content: request.prompt });
        return messages;
    }
    for (const turn of context.history ?? []) {
        if (turn.participant && turn.participant !== PARTICIPANT_ID) {
            continue;
        }
        if (isRequestTurn(turn)) {
            messages.push({ role: 'user', content: turn.prompt });
        } else {
            if (turn.result?.errorDetails) {
                continue;
            }
            const text = responseText(turn);
            if (text.trim() !== '') {
                messages.push({ role: 'assistant', content: text });
            }
        }
    }
    messages.push({ role: 'user', content: request.prompt });
    return messages;
}

export function createChatHandler(deps: ChatDeps): vscode.ChatRequestHandler {
    return async (request, context, stream, token): Promise<vscode.ChatResult> => {
        if (request.prompt.trim() === '') {
            stream.markdown('Ask a question after `@cfgate`.');
            return {};
        }
        let streamed = '';
        let thinking = false;
        const session = deps.session?.() || undefined;
        if (session && (context.history ?? []).length === 0) {
            // A new chat: say whose history the answer follows (cfgate: Choose Session shows it).
            stream.progress(`Continuing cfgate session ${session}`);
        }
        try {
            const result: ChatResult = await deps.client.chat(
                session
                    ? { messages: buildMessages(request, context, session), session }
                    : { messages: buildMessages(request, context) },
                (piece) => {
                    if (token.isCancellationRequested) {
                        return;
                    }
                    if (piece.content !== undefined && piece.content !== '') {
                        streamed += piece.content;
                        stream.markdown(piece.content);
                    } else if (piece.reasoning !== undefined && !thinking && streamed === '') {
                        thinking = true;
                        stream.progress('Thinking…');
                    } else if (piece.message !== undefined && streamed === '') {
                        // e.g. "rate limited: waiting 3 s": the chat view's transient
                        // progress line (the answer replaces it), never answer text.
                        stream.progress(`cfgate: ${piece.message}`);
                    }
                },
                token,
            );
            if (streamed === '' && result.content) {
                stream.markdown(result.content);
            }
            return {
                metadata: { model: result.model, finish_reason: result.finish_reason, usage: result.usage, session },
            };
        } catch (error) {
            if (isCancellation(error) || token.isCancellationRequested) {
                return { metadata: { cancelled: true } };
            }
            const message = formatError(error);
            deps.onError?.(message, error);
            return { errorDetails: { message } };
        }
    };
}
