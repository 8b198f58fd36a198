// The `cfgate.*` settings and their mapping to the daemon's flat keys. No `vscode` import:
// the extension passes a getter over `workspace.getConfiguration('cfgate')`.

import type { DaemonSettings } from './client';

export interface CompletionSettings {
    enabled: boolean;
    debounceMs: number;
}

export interface ExtensionSettings {
    /** The cfgate binary (`cfgate.path`). */
    path: string;
    /** `cfgate.shared`: join the user's one shared daemon (`cfgate serve --shared`). */
    shared: boolean;
    /** What goes to the daemon as initializationOptions / didChangeConfiguration. */
    daemon: DaemonSettings;
    completion: CompletionSettings;
    /** `cfgate.chat.session`: the session `@cfgate` continues by default ('' for none). */
    chatSession: string;
}

/** Reads one setting below `cfgate.` (e.g. `completion.enabled`). */
export type SettingGetter = (key: string) => unknown;

export const DEFAULT_DEBOUNCE_MS = 150;

/** `cfgate.*` setting → daemon key. Never the token: that stays in the environment. */
export const DAEMON_KEYS: ReadonlyArray<[setting: string, key: keyof DaemonSettings]> = [
    ['model', 'model'],
    ['baseUrl', 'base_url'],
    ['gatewayId', 'gateway_id'],
    ['accountId', 'account_id'],
    ['maxTokens', 'max_tokens'],
];

function text(value: unknown): string | undefined {
    return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

function positiveInteger(value: unknown): number | undefined {
    return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

export function readSettings(get: SettingGetter): ExtensionSettings {
    const daemon: DaemonSettings = {};
    for (const [setting, key] of DAEMON_KEYS) {
        const raw = get(setting);
        if (key === 'max_tokens') {
            const n = positiveInteger(raw);
            if (n !== undefined) {
                daemon.max_tokens = n;
            }
        } else {
            const s = text(raw);
            if (s !== undefined) {
                daemon[key] = s;
            }
        }
    }
    const debounce = get('completion.debounceMs');
    return {
        path: text(get('path')) ?? 'cfgate',
        // The manifest's default (true) is what VS Code returns when the user set nothing.
        shared: get('shared') === true,
        daemon,
        chatSession: text(get('chat.session')) ?? '',
        completion: {
            enabled: get('completion.enabled') !== false,
            debounceMs:
                typeof debounce === 'number' && Number.isFinite(debounce) && debounce >= 0
                    ? Math.min(Math.floor(debounce), 10_000)
                    : DEFAULT_DEBOUNCE_MS,
        },
    };
}

export function sameDaemonSettings(a: DaemonSettings, b: DaemonSettings): boolean {
    return DAEMON_KEYS.every(([, key]) => a[key] === b[key]);
}

/**
 * What a settings change asks of the running daemon: a new binary or a switch to or from
 * the shared daemon needs a restart; any other change is sent as
 * `workspace/didChangeConfiguration` (a cleared key as `null`, which unsets it), so the
 * requests in flight go on.
 */
export function settingsChange(before: ExtensionSettings, after: ExtensionSettings): 'none' | 'notify' | 'restart' {
    if (before.path !== after.path || before.shared !== after.shared) {
        return 'restart';
    }
    return sameDaemonSettings(before.daemon, after.daemon) ? 'none' : 'notify';
}

/** Every daemon key, `null` where unset: the daemon merges what it is sent. */
export function replacingSettings(daemon: DaemonSettings): Record<string, string | number | null> {
    const out: Record<string, string | number | null> = {};
    for (const [, key] of DAEMON_KEYS) {
        out[key] = daemon[key] ?? null;
    }
    return out;
}
