// `cfgate.selectModel` and `cfgate.status`. The `vscode` calls they need are passed in,
// so the logic runs in tests without VS Code.

import type { CfgateClient, ModelInfo, StatusResult } from './client';
import { formatError } from './client';

export const DEFAULT_MODEL = '@cf/meta/llama-3.3-70b-instruct-fp8-fast';

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
    showErrorMessage(message: string): void;
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

/** The daemon lists a Workers AI model in the compat endpoint's spelling
 *  (`workers-ai/@cf/...`) while settings usually say `@cf/...`: both name one model. */
export function sameModel(a: string | undefined, b: string | undefined): boolean {
    const key = (id: string | undefined) => id?.replace(/^workers-ai\/(?=@cf\/)/, '');
    return a !== undefined && b !== undefined && key(a) === key(b);
}

/** "owner, 24000 tokens context, tools, $0.29 in / $2.25 out per M tokens": what the
 *  gateway says about a model (a field it does not give is left out). */
export function modelDetails(model: ModelInfo): string {
    const price = (n: number | null | undefined) => (typeof n === 'number' ? `$${n}` : '?');
    const parts: string[] = [];
    if (typeof model.owned_by === 'string' && model.owned_by !== '') {
        parts.push(model.owned_by);
    }
    if (typeof model.context_window === 'number') {
        parts.push(`${model.context_window} tokens context`);
    }
    if (model.function_calling === true) {
        parts.push('tools');
    }
    if (typeof model.cost_in === 'number' || typeof model.cost_out === 'number') {
        parts.push(`${price(model.cost_in)} in / ${price(model.cost_out)} out per M tokens`);
    }
    return parts.join(', ');
}

/** The quick pick's items: the current model first (listed by the gateway or not), then
 *  the gateway's models in the daemon's order, then typing an id and the default. */
export function modelItems(models: ModelInfo[], current: string | undefined): PickItem[] {
    const item = (m: ModelInfo): PickItem => {
        const detail = modelDetails(m);
        return { label: m.id, detail: detail === '' ? undefined : detail };
    };
    const listed = models.filter((m) => m && typeof m.id === 'string');
    const currentIndex = current === undefined ? -1 : listed.findIndex((m) => sameModel(m.id, current));
    const items = listed.filter((_, i) => i !== currentIndex).map(item);
    if (current) {
        const first = currentIndex >= 0 ? item(listed[currentIndex]) : { label: current };
        items.unshift({ ...first, description: '(current)' });
    }
    items.push({ label: CUSTOM_LABEL }, { label: DEFAULT_LABEL, detail: DEFAULT_MODEL });
    return items;
}

/** Runs the quick pick over the models the daemon lists (`cfgate/models`), the current
 *  one first: `configured` (the `cfgate.model` setting), else the daemon's model. Returns
 *  the model now set ('' for the default), or undefined if the user gave up or the list
 *  could not be had (then its error and hint are shown). */
export async function selectModel(
    ui: SelectModelUi,
    client: Pick<CfgateClient, 'models' | 'status'>,
    configured: string | undefined,
): Promise<string | undefined> {
    let models: ModelInfo[];
    let current = configured || undefined;
    try {
        const [result, status] = await Promise.all([client.models(), current ? undefined : client.status()]);
        models = Array.isArray(result?.models) ? result.models : [];
        current = current ?? status?.model ?? undefined;
    } catch (error) {
        ui.showErrorMessage(formatError(error));
        return undefined;
    }
    const picked = await ui.showQuickPick(modelItems(models, current), {
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
    for (const b of status.budgets ?? []) {
        const limit = typeof b.limit === 'number' ? `${b.limit} a minute${b.learned ? ' (learned from 429s)' : ''}` : 'no limit known';
        const cooling = typeof b.cool_down_ms === 'number' ? `, rate limited: cooling down ${Math.ceil(b.cool_down_ms / 1000)} s` : '';
        lines.push(`rate budget ${b.gateway}: ${limit}, ${b.used_last_minute} used in the last minute${cooling}`);
    }
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
