// Minimal stand-ins for the few `vscode` classes and objects the provider, participant and
// commands touch. Only the edge is faked: the logic under test is the extension's own.

import type * as vscode from 'vscode';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';

export class Position {
    constructor(
        readonly line: number,
        readonly character: number,
    ) {}
}

export class Range {
    constructor(
        readonly start: Position,
        readonly end: Position,
    ) {}
    get isEmpty(): boolean {
        return this.start.line === this.end.line && this.start.character === this.end.character;
    }
}

export class InlineCompletionItem {
    constructor(
        readonly insertText: string,
        readonly range?: Range,
    ) {}
}

export class MarkdownString {
    constructor(readonly value: string) {}
}

/** A text document over a string, with VS Code's offset/position conversions. */
export function fakeDocument(text: string, languageId = 'python', fileName = '/work/project/example.py'): vscode.TextDocument {
    const lineStarts = [0];
    for (let i = 0; i < text.length; i++) {
        if (text[i] === '\n') {
            lineStarts.push(i + 1);
        }
    }
    const offsetAt = (p: Position) => {
        const line = Math.min(Math.max(p.line, 0), lineStarts.length - 1);
        const lineEnd = line + 1 < lineStarts.length ? lineStarts[line + 1] - 1 : text.length;
        return Math.min(lineStarts[line] + Math.max(p.character, 0), lineEnd);
    };
    const positionAt = (offset: number) => {
        const o = Math.min(Math.max(offset, 0), text.length);
        let line = 0;
        while (line + 1 < lineStarts.length && lineStarts[line + 1] <= o) {
            line++;
        }
        return new Position(line, o - lineStarts[line]);
    };
    const doc = {
        uri: { scheme: 'file', fsPath: fileName, toString: () => `file://${fileName}` },
        fileName,
        languageId,
        lineCount: lineStarts.length,
        offsetAt,
        positionAt,
        getText: (range?: Range) => (range ? text.slice(offsetAt(range.start), offsetAt(range.end)) : text),
    };
    return doc as unknown as vscode.TextDocument;
}

/** The position just after the first occurrence of `marker` in `text` (marker removed). */
export function splitAt(text: string, marker = '|'): { document: vscode.TextDocument; position: vscode.Position; prefix: string; suffix: string } {
    const at = text.indexOf(marker);
    if (at < 0) {
        throw new Error('no cursor marker');
    }
    const prefix = text.slice(0, at);
    const suffix = text.slice(at + marker.length);
    const document = fakeDocument(prefix + suffix);
    const position = document.positionAt(prefix.length);
    return { document, position, prefix, suffix };
}

export const inlineContext = { triggerKind: 1, selectedCompletionInfo: undefined } as unknown as vscode.InlineCompletionContext;

export function tokenSource(): CancellationTokenSource & { vscodeToken: vscode.CancellationToken } {
    const source = new CancellationTokenSource() as CancellationTokenSource & { vscodeToken: vscode.CancellationToken };
    source.vscodeToken = source.token as unknown as vscode.CancellationToken;
    return source;
}

/** A ChatResponseStream that records what the participant wrote. */
export class RecordingStream {
    readonly markdown: string[] = [];
    readonly progress: string[] = [];
    asStream(): vscode.ChatResponseStream {
        return {
            markdown: (value: string | MarkdownString) => {
                this.markdown.push(typeof value === 'string' ? value : value.value);
            },
            progress: (value: string) => {
                this.progress.push(value);
            },
            anchor: () => undefined,
            button: () => undefined,
            filetree: () => undefined,
            reference: () => undefined,
            push: () => undefined,
        } as unknown as vscode.ChatResponseStream;
    }
}

export function requestTurn(prompt: string, participant = 'cfgate.chat'): vscode.ChatRequestTurn {
    return { prompt, participant, command: undefined, references: [] } as unknown as vscode.ChatRequestTurn;
}

export function responseTurn(text: string, participant = 'cfgate.chat', result: vscode.ChatResult = {}): vscode.ChatResponseTurn {
    return {
        response: [{ value: new MarkdownString(text) }],
        result,
        participant,
    } as unknown as vscode.ChatResponseTurn;
}

export function chatRequest(prompt: string): vscode.ChatRequest {
    return { prompt, command: undefined, references: [] } as unknown as vscode.ChatRequest;
}

export const vs = { InlineCompletionItem, Range } as unknown as {
    InlineCompletionItem: typeof vscode.InlineCompletionItem;
    Range: typeof vscode.Range;
};
