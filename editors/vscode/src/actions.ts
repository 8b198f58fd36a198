// Code actions on a selection: explain, fix, add docs, as the daemon offers them to plain
// LSP clients (docs/protocol.md, Plain LSP). The extension keeps the daemon's language
// features off (it has its own completion), so the same actions run here over
// `cfgate/chat` with the daemon's prompts. Only types come from `vscode`.

import type * as vscode from 'vscode';
import type { CfgateClient, ChatMessage } from './client';
import { formatError } from './client';

export type ActionKind = 'explain' | 'fix' | 'addDocs';

export const ACTIONS: ReadonlyArray<{ kind: ActionKind; title: string; command: string; codeActionKind?: string }> = [
    { kind: 'explain', title: 'cfgate: explain', command: 'cfgate.explainSelection' },
    { kind: 'fix', title: 'cfgate: fix', command: 'cfgate.fixSelection', codeActionKind: 'quickfix' },
    { kind: 'addDocs', title: 'cfgate: add docs', command: 'cfgate.addDocsSelection', codeActionKind: 'refactor.rewrite' },
];

const SYSTEM: Record<ActionKind, string> = {
    explain:
        'You explain code to a programmer. Be brief and concrete: what the code does, then anything surprising or wrong in it. Plain text, no code fences.',
    fix:
        'You fix bugs in code. Reply with only the corrected code that replaces the code you were given: same language, same indentation, no explanation, no code fences. If nothing is wrong, reply with the code unchanged.',
    addDocs:
        'You add documentation comments to code. Reply with only the code you were given, unchanged, with idiomatic doc comments added for the language: same indentation, no explanation, no code fences.',
};

/** The daemon's prompt for an action on `code` (src/actions.rs). */
export function actionMessages(kind: ActionKind, languageId: string, code: string): ChatMessage[] {
    return [
        { role: 'system', content: SYSTEM[kind] },
        { role: 'user', content: `Language: ${languageId || 'text'}\n\`\`\`\n${code}\n\`\`\`` },
    ];
}

/** The text replacing `selected`: code fences around the answer dropped, and the
 *  selection's own trailing line break kept, so the next line stays put. */
export function replacement(selected: string, answer: string): string {
    let text = answer;
    const fenced = /^\s*```[^\n]*\n([\s\S]*?)\n?```\s*$/.exec(text);
    if (fenced) {
        text = fenced[1];
    }
    const ending = selected.endsWith('\r\n') ? '\r\n' : selected.endsWith('\n') ? '\n' : '';
    return text.replace(/[\r\n]+$/, '') + ending;
}

export interface ActionDeps {
    client: Pick<CfgateClient, 'chat'>;
    vs: {
        CodeAction: typeof vscode.CodeAction;
        CodeActionKind: { Empty: vscode.CodeActionKind; QuickFix: vscode.CodeActionKind; RefactorRewrite: vscode.CodeActionKind };
    };
}

/** Offers the three actions on a non-empty selection, as the daemon does. */
export class CfgateCodeActionProvider implements vscode.CodeActionProvider {
    constructor(private readonly deps: ActionDeps) {}

    provideCodeActions(document: vscode.TextDocument, range: vscode.Range | vscode.Selection): vscode.CodeAction[] {
        if (range.isEmpty || document.getText(range).trim() === '') {
            return [];
        }
        const { CodeAction, CodeActionKind } = this.deps.vs;
        return ACTIONS.map((a) => {
            const kind = a.codeActionKind === 'quickfix' ? CodeActionKind.QuickFix : a.codeActionKind ? CodeActionKind.RefactorRewrite : CodeActionKind.Empty;
            const action = new CodeAction(a.title, kind);
            action.command = { title: a.title, command: a.command, arguments: [document.uri, range] };
            return action;
        });
    }
}

export interface RunUi {
    /** Shows the explanation. */
    showExplanation(text: string): void | Thenable<unknown>;
    /** Replaces `range` of the document with `text` if it is still at `version`; false if not applied. */
    replace(document: vscode.TextDocument, range: vscode.Range, text: string, version: number): Thenable<boolean>;
    showErrorMessage(message: string): void;
}

/** Runs an action on `range` of `document`: the explanation shown, or the edit applied
 *  (not when the document changed while the model worked). Returns what was shown or
 *  applied, or undefined on failure. */
export async function runAction(
    kind: ActionKind,
    client: Pick<CfgateClient, 'chat'>,
    document: vscode.TextDocument,
    range: vscode.Range,
    ui: RunUi,
): Promise<string | undefined> {
    const selected = document.getText(range);
    const version = document.version;
    try {
        const result = await client.chat({ messages: actionMessages(kind, document.languageId, selected) });
        const answer = result.content ?? '';
        if (kind === 'explain') {
            await ui.showExplanation(answer);
            return answer;
        }
        const text = replacement(selected, answer);
        if (!(await ui.replace(document, range, text, version))) {
            ui.showErrorMessage('cfgate: the document changed while the model was working; nothing was replaced');
            return undefined;
        }
        return text;
    } catch (error) {
        ui.showErrorMessage(formatError(error));
        return undefined;
    }
}

/** The messages of "ask about the selection", as Neovim's :CfgateAsk and Emacs's
 *  cfgate-ask-region send them: the instruction, then the code in a fence. */
export function askMessages(instruction: string, languageId: string, code: string): ChatMessage[] {
    return [{ role: 'user', content: `${instruction}\n\n\`\`\`${languageId}\n${code}\n\`\`\`` }];
}

/** `cfgate.askSelection`: asks `instruction` about `range` of `document`; the answer is
 *  shown with `ui.showExplanation`. Returns it, or undefined on failure. */
export async function askAboutSelection(
    client: Pick<CfgateClient, 'chat'>,
    document: vscode.TextDocument,
    range: vscode.Range,
    instruction: string,
    ui: Pick<RunUi, 'showExplanation' | 'showErrorMessage'>,
): Promise<string | undefined> {
    try {
        const result = await client.chat({ messages: askMessages(instruction, document.languageId, document.getText(range)) });
        const answer = result.content ?? '';
        await ui.showExplanation(answer);
        return answer;
    } catch (error) {
        ui.showErrorMessage(formatError(error));
        return undefined;
    }
}
