// The status bar item's text from `cfgate/didChangeStatus` (docs/protocol.md): the same
// words as Neovim's statusline() and Emacs's mode line. No `vscode` import.

export interface DaemonStatus {
    state: string;
    message?: string;
}

export const STATUS_COMMAND = 'cfgate.status';

/** How a state reads: "rate limited" for `rate_limited`, else the state itself. */
export function stateWords(state: string): string {
    return state === 'rate_limited' ? 'rate limited' : state;
}

/** Text, tooltip and colour for the daemon's state (undefined: not running). `error`:
 *  the error background; `warning`: the warning background (rate limited: a gateway's
 *  rate budget cools down after a 429, chat waits and completions are shed). */
export function statusBarText(status: DaemonStatus | undefined): { text: string; tooltip: string; error: boolean; warning: boolean } {
    if (!status) {
        return { text: '$(circle-slash) cfgate', tooltip: 'cfgate: the daemon is not running', error: false, warning: false };
    }
    const icon =
        status.state === 'busy'
            ? '$(sync~spin)'
            : status.state === 'ready'
              ? '$(cloud)'
              : status.state === 'rate_limited'
                ? '$(watch)'
                : '$(error)';
    return {
        text: `${icon} cfgate: ${stateWords(status.state)}`,
        tooltip: status.message ? `cfgate: ${status.message}` : `cfgate: ${stateWords(status.state)} — click for the status`,
        error: status.state === 'error' || status.state === 'unauthorized',
        warning: status.state === 'rate_limited',
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
