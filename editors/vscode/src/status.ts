// The status bar item's text from `cfgate/didChangeStatus` (docs/protocol.md): the same
// words as Neovim's statusline() and Emacs's mode line. No `vscode` import.

export interface DaemonStatus {
    state: string;
    message?: string;
}

export const STATUS_COMMAND = 'cfgate.status';

/** Text, tooltip and whether it is an error, for the daemon's state (undefined: not running). */
export function statusBarText(status: DaemonStatus | undefined): { text: string; tooltip: string; error: boolean } {
    if (!status) {
        return { text: '$(circle-slash) cfgate', tooltip: 'cfgate: the daemon is not running', error: false };
    }
    const icon = status.state === 'busy' ? '$(sync~spin)' : status.state === 'ready' ? '$(cloud)' : '$(error)';
    return {
        text: `${icon} cfgate: ${status.state}`,
        tooltip: status.message ? `cfgate: ${status.message}` : `cfgate: ${status.state} — click for the status`,
        error: status.state === 'error' || status.state === 'unauthorized',
    };
}

/** Parses a `cfgate/didChangeStatus` params object; undefined if it is not one. */
export function parseStatus(params: unknown): DaemonStatus | undefined {
    if (!params || typeof params !== 'object') {
        return undefined;
    }
    const { state, message } = params as { state?: unknown; message?: unknown };
    if (typeof state !== 'string') {
        return undefined;
    }
    return typeof message === 'string' ? { state, message } : { state };
}
