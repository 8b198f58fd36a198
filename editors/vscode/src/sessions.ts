// Sessions: conversations the daemon keeps (`cfgate/sessions`, `cfgate/session`, and
// `session` in `cfgate/chat`), which every editor and `cfgate chat --session` can continue.
// The `vscode` calls are passed in, so tests run this without VS Code.

import type { CfgateClient, ChatMessage } from './client';

export const NEW_SESSION_LABEL = '$(add) New session…';
export const NO_SESSION_LABEL = '$(circle-slash) No session (history from this chat only)';

/** Why `name` is not a session name the daemon takes (docs/protocol.md, Sessions), or undefined. */
export function validateSessionName(name: string): string | undefined {
    const value = name.trim();
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(value)) {
        return '1 to 64 letters, digits, ".", "_" or "-", not starting with "."';
    }
    return undefined;
}

/** A session's messages as Markdown, as the chat buffers of the other editors show it. */
export function historyMarkdown(name: string, messages: ChatMessage[]): string {
    const parts = [`# cfgate session ${name}`, ''];
    for (const m of messages) {
        if ((m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string' && m.content !== '') {
            parts.push(m.role === 'user' ? '## You' : '## cfgate', '', m.content, '');
        }
    }
    if (parts.length === 2) {
        parts.push('(no turns yet)', '');
    }
    return parts.join('\n');
}

export interface SessionPickItem {
    label: string;
    description?: string;
    detail?: string;
}

export interface SessionUi {
    showQuickPick(items: SessionPickItem[], options: { placeHolder: string }): Thenable<SessionPickItem | undefined>;
    showInputBox(options: { prompt: string; value?: string; validateInput(value: string): string | undefined }): Thenable<string | undefined>;
}

/** The `cfgate.chooseSession` quick pick over `cfgate/sessions`. Returns the chosen name,
 *  `''` for no session, or undefined when the user gave up. */
export async function pickSession(
    client: Pick<CfgateClient, 'sessions'>,
    ui: SessionUi,
    current: string | undefined,
): Promise<string | undefined> {
    const sessions = await client.sessions();
    const items: SessionPickItem[] = sessions.map((s) => ({
        label: s.name,
        description: s.name === current ? '(current)' : undefined,
        detail: `${s.turns} turn${s.turns === 1 ? '' : 's'}, last ${new Date(s.updated * 1000).toLocaleString()}`,
    }));
    items.push({ label: NEW_SESSION_LABEL }, { label: NO_SESSION_LABEL });
    const picked = await ui.showQuickPick(items, { placeHolder: `cfgate session for @cfgate (now: ${current || 'none'})` });
    if (!picked) {
        return undefined;
    }
    if (picked.label === NO_SESSION_LABEL) {
        return '';
    }
    if (picked.label !== NEW_SESSION_LABEL) {
        return picked.label;
    }
    const typed = await ui.showInputBox({ prompt: 'Name of the new cfgate session', value: current, validateInput: validateSessionName });
    if (typed === undefined || validateSessionName(typed) !== undefined) {
        return undefined;
    }
    return typed.trim();
}
