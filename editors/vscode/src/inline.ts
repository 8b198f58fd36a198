// Inline completions (ghost text) backed by `cfgate/complete`. Only types come from
// `vscode`; the two classes it constructs are passed in, so tests can run it without VS Code.

import type * as vscode from 'vscode';
import type { CfgateClient, CompleteParams } from './client';
import { formatError, isCancellation } from './client';
import type { CompletionSettings } from './settings';

/** Characters of context sent before and after the cursor. */
export const PREFIX_BUDGET = 6000;
export const SUFFIX_BUDGET = 2000;

export interface InlineDeps {
    client: Pick<CfgateClient, 'complete'>;
    settings: () => CompletionSettings;
    vs: {
        InlineCompletionItem: typeof vscode.InlineCompletionItem;
        Range: typeof vscode.Range;
    };
    /** Told about failures (not about cancellations). */
    onError?: (message: string, error: unknown) => void;
}

/** The text around `position`, bounded to the budgets. A cut side is trimmed to whole
 *  lines so the model never sees half a line at the edge. */
export function contextAround(
    document: vscode.TextDocument,
    position: vscode.Position,
    Range: typeof vscode.Range,
    prefixBudget = PREFIX_BUDGET,
    suffixBudget = SUFFIX_BUDGET,
): { prefix: string; suffix: string } {
    const offset = document.offsetAt(position);
    const startOffset = Math.max(0, offset - prefixBudget);
    let prefix = document.getText(new Range(document.positionAt(startOffset), position));
    if (startOffset > 0) {
        const newline = prefix.indexOf('\n');
        prefix = newline >= 0 ? prefix.slice(newline + 1) : prefix;
    }
    const length = document.offsetAt(document.positionAt(Number.MAX_SAFE_INTEGER));
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
        const { prefix, suffix } = contextAround(document, position, this.deps.vs.Range);
        if (prefix.trim() === '' && suffix.trim() === '') {
            return undefined;
        }
        const params: CompleteParams = { prefix, suffix, language: document.languageId };
        if (document.uri?.scheme === 'file') {
            params.path = document.fileName;
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
