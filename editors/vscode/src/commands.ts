// `cfgate.selectModel` and `cfgate.status`. The `vscode` calls they need are passed in,
// so the logic runs in tests without VS Code.

import type { CfgateClient, StatusResult } from './client';
import { formatError } from './client';

export const DEFAULT_MODEL = '@cf/meta/llama-3.3-70b-instruct-fp8-fast';

/** Offered by the quick pick; any other id can be typed in. cfgate has no method to list
 *  a gateway's models, so this is a fixed selection of common ones. */
export const SUGGESTED_MODELS: ReadonlyArray<{ id: string; detail: string }> = [
    { id: '@cf/meta/llama-3.3-70b-instruct-fp8-fast', detail: 'Workers AI (cfgate default)' },
    { id: '@cf/qwen/qwen2.5-coder-32b-instruct', detail: 'Workers AI, code' },
    { id: '@cf/meta/llama-3.1-8b-instruct-fast', detail: 'Workers AI, small and quick' },
    { id: '@cf/deepseek-ai/deepseek-r1-distill-qwen-32b', detail: 'Workers AI, reasoning' },
    { id: 'openai/gpt-4o-mini', detail: 'OpenAI (needs the key stored in the gateway)' },
    { id: 'anthropic/claude-3-5-haiku-latest', detail: 'Anthropic (needs the key stored in the gateway)' },
    { id: 'google-ai-studio/gemini-2.0-flash', detail: 'Google AI Studio (needs the key stored in the gateway)' },
];

export const CUSTOM_LABEL = '$(edit) Enter a model id…';
export const DEFAULT_LABEL = '$(discard) Use cfgate’s default';

export interface PickItem {
    label: string;
    description?: string;
    detail?: string;
}

export interface SelectModelUi {
    showQuickPick(items: PickItem[], options: { placeHolder: string; matchOnDetail?: boolean }): Thenable<PickItem | undefined>;
    showInputBox(options: {
        prompt: string;
        value?: string;
        placeHolder?: string;
        validateInput(value: string): string | undefined;
    }): Thenable<string | undefined>;
    /** Stores `cfgate.model` (undefined: remove it). */
    updateModel(model: string | undefined): Thenable<void>;
    showInformationMessage(message: string): void;
}

/** Why `id` is not a model id cfgate accepts (docs/protocol.md, Model ids), or undefined. */
export function validateModelId(id: string): string | undefined {
    const value = id.trim();
    if (value === '') {
        return 'Enter a model id such as @cf/meta/llama-3.3-70b-instruct-fp8-fast';
    }
    if (/\s/.test(value)) {
        return 'A model id has no white space';
    }
    if (!value.includes('/')) {
        return 'A model id has a vendor prefix: @cf/<author>/<model>, openai/<model>, dynamic/<route>, …';
    }
    return undefined;
}

export function modelItems(current: string | undefined): PickItem[] {
    const items: PickItem[] = SUGGESTED_MODELS.map((m) => ({
        label: m.id,
        description: m.id === current ? '(current)' : undefined,
        detail: m.detail,
    }));
    if (current && !SUGGESTED_MODELS.some((m) => m.id === current)) {
        items.unshift({ label: current, description: '(current)' });
    }
    items.push({ label: CUSTOM_LABEL }, { label: DEFAULT_LABEL, detail: DEFAULT_MODEL });
    return items;
}

/** Runs the quick pick; returns the model now set ('' for the default), or undefined if
 *  the user gave up. */
export async function selectModel(ui: SelectModelUi, current: string | undefined): Promise<string | undefined> {
    const picked = await ui.showQuickPick(modelItems(current), {
        placeHolder: `Model for cfgate chat and completions (now: ${current || DEFAULT_MODEL})`,
        matchOnDetail: true,
    });
    if (!picked) {
        return undefined;
    }
    let model: string | undefined;
    if (picked.label === CUSTOM_LABEL) {
        const typed = await ui.showInputBox({
            prompt: 'Model id, as cfgate takes it',
            value: current,
            placeHolder: '@cf/<author>/<model>, openai/<model>, dynamic/<route>, …',
            validateInput: validateModelId,
        });
        if (typed === undefined || validateModelId(typed) !== undefined) {
            return undefined;
        }
        model = typed.trim();
    } else if (picked.label === DEFAULT_LABEL) {
        model = undefined;
    } else {
        model = picked.label;
    }
    await ui.updateModel(model);
    ui.showInformationMessage(`cfgate: model set to ${model ?? `the default (${DEFAULT_MODEL})`}`);
    return model ?? '';
}

/** `cfgate/status` as lines for the output channel. */
export function statusLines(status: StatusResult): string[] {
    const lines = [
        `cfgate ${status.version} (up ${status.uptime_secs} s)`,
        `credentials complete: ${status.credentials_complete ? 'yes' : 'no'}`,
    ];
    if (status.missing?.length) {
        lines.push(`missing: ${status.missing.join(', ')} (set in the environment VS Code starts from, or in cfgate's config.toml)`);
    }
    if (status.settings_error) {
        lines.push(`settings error: ${status.settings_error}`);
    }
    lines.push(
        `model: ${status.model ?? '(default)'}`,
        `base url: ${status.base_url ?? '(incomplete settings)'}`,
        `account id: ${status.account_id ?? '(unset)'}`,
        `gateway id: ${status.gateway_id ?? '(unset)'}`,
        `requests: ${status.requests.total} total, ${status.requests.in_flight} in flight, ${status.requests.failed} failed`,
    );
    return lines;
}

/** The one-line summary shown as a notification, and how serious it is. */
export function statusSummary(status: StatusResult): { level: 'info' | 'warning'; message: string } {
    if (status.settings_error) {
        return { level: 'warning', message: `cfgate: ${status.settings_error}` };
    }
    if (!status.credentials_complete) {
        const missing = status.missing?.length ? status.missing.join(', ') : 'credentials';
        return {
            level: 'warning',
            message: `cfgate: missing ${missing} — set it in the environment VS Code starts from, or in cfgate's config.toml`,
        };
    }
    return {
        level: 'info',
        message: `cfgate ${status.version}: ready, model ${status.model ?? DEFAULT_MODEL}, ${status.requests.total} requests (${status.requests.failed} failed)`,
    };
}

export interface StatusUi {
    appendLine(line: string): void;
    showInformationMessage(message: string): void;
    showWarningMessage(message: string): void;
    showErrorMessage(message: string): void;
}

export async function showStatus(client: Pick<CfgateClient, 'status'>, ui: StatusUi): Promise<StatusResult | undefined> {
    try {
        const status = await client.status();
        for (const line of statusLines(status)) {
            ui.appendLine(line);
        }
        const summary = statusSummary(status);
        if (summary.level === 'info') {
            ui.showInformationMessage(summary.message);
        } else {
            ui.showWarningMessage(summary.message);
        }
        return status;
    } catch (error) {
        const message = formatError(error);
        ui.appendLine(message);
        ui.showErrorMessage(message);
        return undefined;
    }
}
