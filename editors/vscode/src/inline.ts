// Inline completions (ghost text) backed by `cfgate/complete`. Only types come from
// `vscode`; the two classes it constructs are passed in, so tests can run it without VS Code.

import type * as vscode from 'vscode';
import type { CfgateClient, CompleteParams } from './client';
import { formatError, isCancellation } from './client';
import type { CompletionSettings } from './settings';

/** The daemon's default `completion_context_chars`; the daemon's own value comes from
 *  `cfgate/status` (InlineDeps.contextChars). */
export const DEFAULT_CONTEXT_CHARS = 8000;
/** Its default split: about three quarters before the cursor, the rest after. */
export const PREFIX_BUDGET = (DEFAULT_CONTEXT_CHARS * 3) / 4;
export const SUFFIX_BUDGET = DEFAULT_CONTEXT_CHARS - PREFIX_BUDGET;

export interface InlineDeps {
    client: Pick<CfgateClient, 'complete'>;
    settings: () => CompletionSettings;
    vs: {
        InlineCompletionItem: typeof vscode.InlineCompletionItem;
        Range: typeof vscode.Range;
    };
    /** Told about failures (not about cancellations). */
    onError?: (message: string, error: unknown) => void;
    /** The daemon's `completion_context_chars` (default DEFAULT_CONTEXT_CHARS). */
    contextChars?: () => number;
    /** The document's path as sent: relative to the workspace folder (default: none). */
    relativePath?: (document: vscode.TextDocument) => string | undefined;
}

/** The text around `position` within `total` chars, split as the daemon splits it for
 *  plain-LSP completion: about three quarters before, the rest after, a short side
 *  leaving its share to the other. A cut side is trimmed to whole lines so the model
 *  never sees half a line at the edge. */
export function contextAround(
    document: vscode.TextDocument,
    position: vscode.Position,
    Range: typeof vscode.Range,
    total = DEFAULT_CONTEXT_CHARS,
): { prefix: string; suffix: string } {
    const offset = document.offsetAt(position);
    const length = document.offsetAt(document.positionAt(Number.MAX_SAFE_INTEGER));
    const beforeShare = Math.floor((total * 3) / 4);
    const prefixBudget = Math.max(beforeShare, total - Math.min(length - offset, total - beforeShare));
    const suffixBudget = total - Math.min(offset, prefixBudget);
    const startOffset = Math.max(0, offset - prefixBudget);
    let prefix = document.getText(new Range(document.positionAt(startOffset), position));
    if (startOffset > 0) {
        const newline = prefix.indexOf('\n');
        prefix = newline >= 0 ? prefix.slice(newline + 1) : prefix;
    }
    const endOffset = Math.min(length, offset + suffixBudget);
    let suffix = document.getText(new Range(position, document.positionAt(endOffset)));
    if (endOffset < length) {
        // Cut short: drop the partial last line.
        const newline = suffix.lastIndexOf('\n');
        suffix = newline >= 0 ? suffix.slice(0, newline + 1) : suffix;
    }
    return { prefix, suffix };
}

/** Resolves after `ms`, or at once when `token` is cancelled; `true` if not cancelled. */
export function pause(ms: number, token: vscode.CancellationToken): Promise<boolean> {
    if (token.isCancellationRequested) {
        return Promise.resolve(false);
    }
    if (ms <= 0) {
        return Promise.resolve(true);
    }
    return new Promise((resolve) => {
        const timer = setTimeout(() => {
            subscription.dispose();
            resolve(!token.isCancellationRequested);
        }, ms);
        const subscription = token.onCancellationRequested(() => {
            clearTimeout(timer);
            subscription?.dispose();
            resolve(false);
        });
    });
}

export class CfgateInlineCompletionProvider implements vscode.InlineCompletionItemProvider {
    constructor(private readonly deps: InlineDeps) {}

    async provideInlineCompletionItems(
        document: vscode.TextDocument,
        position: vscode.Position,
        _context: vscode.InlineCompletionContext,
        token: vscode.CancellationToken,
    ): Promise<vscode.InlineCompletionItem[] | undefined> {
        const settings = this.deps.settings();
        if (!settings.enabled) {
            return undefined;
        }
        if (!(await pause(settings.debounceMs, token))) {
            return undefined;
        }
        const { prefix, suffix } = contextAround(document, position, this.deps.vs.Range, this.deps.contextChars?.() ?? DEFAULT_CONTEXT_CHARS);
        if (prefix.trim() === '' && suffix.trim() === '') {
            return undefined;
        }
        const params: CompleteParams = { prefix, suffix, language: document.languageId };
        if (document.uri?.scheme === 'file') {
            // Relative to the workspace folder, as the other editors send it.
            params.path = this.deps.relativePath?.(document) ?? document.fileName;
        }
        try {
            const result = await this.deps.client.complete(params, undefined, token);
            if (token.isCancellationRequested || !result.text) {
                return undefined;
            }
            const range = new this.deps.vs.Range(position, position);
            return [new this.deps.vs.InlineCompletionItem(result.text, range)];
        } catch (error) {
            if (!isCancellation(error) && !token.isCancellationRequested) {
                this.deps.onError?.(formatError(error), error);
            }
            return undefined;
        }
    }
}
