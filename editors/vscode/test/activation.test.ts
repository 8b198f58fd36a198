// The real src/extension.ts and the real vscode-languageclient, with only the `vscode`
// module faked (test/vscode-stub.ts), against the real `cfgate serve` and fake gateway:
// activation, the registered provider/participant/commands, settings changes, restart,
// cancellation through LanguageClient, and deactivation.

import { after, before, beforeEach, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as vscode from 'vscode';
import type { StatusResult } from '../src/client';
import { CFGATE_BIN, FakeGateway, waitFor } from '../testlib/harness';
import { RecordingStream, chatRequest, inlineContext, splitAt, tokenSource } from '../testlib/fakes';
import { changeSettings, fakeExtensionContext, installVscodeStub, recorded, settings } from '../testlib/vscode-stub';

/** cfgate processes that are children of this test process. */
function cfgateChildren(): number[] {
    let out = '';
    try {
        out = execFileSync('ps', ['-o', 'pid=,stat=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' });
    } catch {
        return []; // ps exits 1 when nothing matches
    }
    return out
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length >= 3 && !f[1].startsWith('Z') && f[2] === CFGATE_BIN && f[3] === 'serve')
        .map((f) => Number(f[0]));
}

let fake: FakeGateway;
let home: string;
let extension: typeof import('../src/extension');
const context = fakeExtensionContext();

async function status(): Promise<StatusResult | undefined> {
    return (await recorded.commands.get('cfgate.status')!()) as StatusResult | undefined;
}

async function chatRequests(): Promise<any[]> {
    return (await fake.requests()).filter((r) => r.path.endsWith('/chat/completions'));
}

before(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'cfgate-vscode-activation-'));
    for (const key of Object.keys(process.env)) {
        if (key.startsWith('CLOUDFLARE_') || key.startsWith('CFGATE_') || key.startsWith('XDG_')) {
            delete process.env[key];
        }
    }
    Object.assign(process.env, {
        HOME: home,
        XDG_CONFIG_HOME: path.join(home, 'config'),
        XDG_STATE_HOME: path.join(home, 'state'),
        XDG_DATA_HOME: path.join(home, 'data'),
        XDG_CACHE_HOME: path.join(home, 'cache'),
        CLOUDFLARE_API_TOKEN: 'test-token',
    });
    fake = await FakeGateway.start();
    settings.set('cfgate.path', CFGATE_BIN);
    settings.set('cfgate.baseUrl', fake.baseUrl);
    settings.set('cfgate.completion.debounceMs', 0);
    installVscodeStub();
    extension = require('../src/extension');
});

after(async () => {
    await extension?.deactivate();
    context.dispose();
    await fake?.stop();
    fs.rmSync(home, { recursive: true, force: true });
});

beforeEach(async () => {
    await fake.reset();
    recorded.messages.length = 0;
});

describe('extension activation (vscode stubbed, real language client and daemon)', () => {
    test('activate registers the provider, the participant and the commands, and starts cfgate', async () => {
        extension.activate(context as unknown as vscode.ExtensionContext);
        assert.equal(recorded.inlineProviders.length, 1);
        assert.deepEqual(
            recorded.participants.map((p) => p.id),
            ['cfgate.chat'],
        );
        assert.deepEqual([...recorded.commands.keys()].sort(), [
            'cfgate.addDocsSelection',
            'cfgate.askSelection',
            'cfgate.chooseSession',
            'cfgate.explainSelection',
            'cfgate.fixSelection',
            'cfgate.restart',
            'cfgate.selectModel',
            'cfgate.setGatewayToken',
            'cfgate.status',
        ]);
        assert.equal(recorded.codeActionProviders.length, 1);
        const s = await status();
        assert.ok(s, JSON.stringify(recorded.messages));
        assert.equal(s.credentials_complete, true);
        assert.equal(s.base_url, fake.baseUrl, 'cfgate.baseUrl went to the daemon as base_url');
        assert.equal(recorded.messages.at(-1)?.level, 'info');
        assert.equal(cfgateChildren().length, 1);
    });

    test('inline completion through the LanguageClient', async () => {
        await fake.script({ content: 'print("hi")' });
        const { document, position, prefix, suffix } = splitAt('def main():\n    |\n');
        const provider = recorded.inlineProviders[0].provider as vscode.InlineCompletionItemProvider;
        const items = (await provider.provideInlineCompletionItems(document, position, inlineContext, tokenSource().vscodeToken)) as any[];
        assert.equal(items?.length, 1, JSON.stringify(recorded.messages));
        assert.equal(items[0].insertText, 'print("hi")');
        const [request] = await chatRequests();
        assert.ok(JSON.stringify(request.body.messages).includes(JSON.stringify(`${prefix}<CURSOR>${suffix}`).slice(1, -1)));
    });

    test('chat participant streams through the LanguageClient\'s progress routing', async () => {
        const stream = new RecordingStream();
        const handler = recorded.participants[0].handler as vscode.ChatRequestHandler;
        const result = (await handler(chatRequest('one two three four'), { history: [] }, stream.asStream(), tokenSource().vscodeToken)) as vscode.ChatResult;
        assert.equal(result.errorDetails, undefined, JSON.stringify(result));
        assert.ok(stream.markdown.length >= 2, JSON.stringify(stream.markdown));
        assert.equal(stream.markdown.join(''), 'echo: one two three four');
    });

    test('the status bar item follows cfgate/didChangeStatus: busy while a chat streams, then ready', async () => {
        const item = recorded.statusItems.at(-1)!;
        await waitFor('ready', () => item.text === '$(cloud) cfgate: ready');
        assert.equal(item.shown, true);
        assert.equal(item.command, 'cfgate.status');
        await fake.script({ chunks: ['slow '], hold_open: true });
        const source = tokenSource();
        const handler = recorded.participants[0].handler as vscode.ChatRequestHandler;
        const stream = { markdown: () => undefined, progress: () => undefined } as unknown as vscode.ChatResponseStream;
        const answer = handler(chatRequest('wait'), { history: [] }, stream, source.vscodeToken);
        await waitFor('busy', () => item.text === '$(sync~spin) cfgate: busy');
        source.cancel();
        await answer;
        await waitFor('ready again', () => item.text === '$(cloud) cfgate: ready');
    });

    test('a 429: the status bar item says rate limited (warning colour), the chat shows the wait, then the answer', async () => {
        const item = recorded.statusItems.at(-1)!;
        await waitFor('ready', () => item.text === '$(cloud) cfgate: ready');
        await fake.script({
            status: 429,
            body: '{"success":false,"errors":[{"code":2003,"message":"Rate limited"}]}',
            headers: [['retry-after', '3']],
        });
        const stream = new RecordingStream();
        const handler = recorded.participants[0].handler as vscode.ChatRequestHandler;
        const answer = handler(chatRequest('wait for it'), { history: [] }, stream.asStream(), tokenSource().vscodeToken);
        await waitFor('the rate-limited status bar item', () => item.text === '$(watch) cfgate: rate limited');
        assert.equal(item.backgroundColor?.id, 'statusBarItem.warningBackground');
        assert.match(String(item.tooltip), /^cfgate: .*429/);
        const note = await waitFor('the waiting note in the chat view', () => stream.progress.find((p) => p.includes('rate limited')));
        assert.match(note, /^cfgate: rate limited: waiting \d+ s$/);
        assert.deepEqual(stream.markdown, [], 'no answer text while waiting');
        const result = (await answer) as vscode.ChatResult;
        assert.equal(result.errorDetails, undefined, JSON.stringify(result));
        assert.equal(stream.markdown.join(''), 'echo: wait for it');
        await waitFor('not rate limited any more', () => item.text === '$(cloud) cfgate: ready');
        assert.equal(item.backgroundColor, undefined);
        assert.equal((await chatRequests()).length, 2, 'the 429, then the answer');
    });

    test('chat cancellation goes through LanguageClient as $/cancelRequest', async () => {
        const before = (await fake.stats()).streams_dropped;
        await fake.script({ chunks: ['slow '], hold_open: true });
        const source = tokenSource();
        const stream = {
            markdown: () => source.cancel(),
            progress: () => undefined,
        } as unknown as vscode.ChatResponseStream;
        const handler = recorded.participants[0].handler as vscode.ChatRequestHandler;
        const result = (await handler(chatRequest('forever'), { history: [] }, stream, source.vscodeToken)) as vscode.ChatResult;
        assert.equal(result.errorDetails, undefined);
        assert.equal(result.metadata?.cancelled, true);
        await waitFor('the upstream stream to be dropped', async () => (await fake.stats()).streams_dropped > before);
    });

    test('a changed setting is sent as didChangeConfiguration (no restart)', async () => {
        const [pid] = cfgateChildren();
        changeSettings({ 'cfgate.model': 'openai/gpt-4o-mini', 'cfgate.maxTokens': 64 });
        await waitFor('the daemon to use the new model', async () => (await status())?.model === 'openai/gpt-4o-mini');
        await (recorded.participants[0].handler as vscode.ChatRequestHandler)(
            chatRequest('hello'),
            { history: [] },
            new RecordingStream().asStream(),
            tokenSource().vscodeToken,
        );
        const [request] = await chatRequests();
        assert.equal(request.body.model, 'openai/gpt-4o-mini');
        assert.equal(request.body.max_tokens, 64);
        assert.deepEqual(cfgateChildren(), [pid], 'same daemon');
    });

    test('clearing a setting unsets it in the same daemon (no restart)', async () => {
        const [pid] = cfgateChildren();
        changeSettings({ 'cfgate.model': undefined, 'cfgate.maxTokens': undefined });
        const s = await waitFor('the default model back', async () => {
            const now = await status();
            return now?.model === '@cf/meta/llama-3.3-70b-instruct-fp8-fast' ? now : undefined;
        });
        assert.equal(s.base_url, fake.baseUrl);
        assert.deepEqual(cfgateChildren(), [pid], 'same daemon');
        assert.deepEqual(recorded.messages.filter((m) => m.level !== 'info'), [], 'no error shown');
    });

    test('quick successive changes end with one daemon holding the last settings', async () => {
        changeSettings({ 'cfgate.maxTokens': 10 });
        changeSettings({ 'cfgate.maxTokens': undefined }); // a restart
        changeSettings({ 'cfgate.model': 'openai/gpt-4o' });
        changeSettings({ 'cfgate.gatewayId': 'gw-2' });
        const s = await waitFor('the last settings', async () => {
            const now = await status();
            return now?.model === 'openai/gpt-4o' && now.gateway_id === 'gw-2' ? now : undefined;
        });
        assert.equal(s.base_url, fake.baseUrl);
        await waitFor('exactly one daemon', () => cfgateChildren().length === 1);
        changeSettings({ 'cfgate.gatewayId': undefined, 'cfgate.model': undefined });
        await waitFor('the defaults again', async () => (await status())?.gateway_id === 'default');
        assert.equal(cfgateChildren().length, 1);
    });

    test('cfgate.selectModel offers the daemon\'s list, updates the setting, which reaches the daemon', async () => {
        recorded.quickPick = (items) => items.find((i: { label: string }) => i.label === 'openai/gpt-5-mini');
        await recorded.commands.get('cfgate.selectModel')!();
        assert.equal(settings.get('cfgate.model'), 'openai/gpt-5-mini');
        await waitFor('the daemon to use the picked model', async () => (await status())?.model === 'openai/gpt-5-mini');
    });

    test('a binary that cannot start is reported as "cfgate: message — hint"; fixing the path recovers', async () => {
        changeSettings({ 'cfgate.path': path.join(home, 'no-such-cfgate') });
        await waitFor('the start failure to be shown', () =>
            recorded.messages.find((m) => m.level === 'error' && m.message.startsWith('cfgate: could not start')),
        );
        const errors = recorded.messages.filter((m) => m.level === 'error').map((m) => m.message);
        assert.equal(errors.length, 1, `one notification: ${JSON.stringify(errors)}`);
        assert.match(errors[0], /^cfgate: could not start .+ — .*cfgate\.path/);
        assert.deepEqual(cfgateChildren(), []);
        recorded.messages.length = 0;
        assert.equal(await status(), undefined);
        assert.match(recorded.messages.at(-1)!.message, /^cfgate: could not start/);
        changeSettings({ 'cfgate.path': CFGATE_BIN });
        const s = await waitFor('the daemon to come back', status);
        assert.equal(s.credentials_complete, true);
        assert.equal(cfgateChildren().length, 1);
    });

    test('cfgate.setGatewayToken keeps the token in secret storage and the daemon sends it to the gateway', async () => {
        let asked: any;
        recorded.inputBox = (options) => {
            asked = options;
            return 'gw-secret-token';
        };
        try {
            assert.equal(await recorded.commands.get('cfgate.setGatewayToken')!(), true);
            assert.equal(asked.password, true);
            assert.equal(await (context as any).secrets.get('cfgate.gatewayToken'), 'gw-secret-token');
            const handler = recorded.participants[0].handler as vscode.ChatRequestHandler;
            const result = (await handler(chatRequest('hi'), { history: [] }, new RecordingStream().asStream(), tokenSource().vscodeToken)) as vscode.ChatResult;
            assert.equal(result.errorDetails, undefined, JSON.stringify(result));
            const [request] = await chatRequests();
            const header = request.headers.find(([name]: [string, string]) => name.toLowerCase() === 'cf-aig-authorization');
            assert.deepEqual(header, ['cf-aig-authorization', 'Bearer gw-secret-token']);
            assert.ok(!recorded.output.join('\n').includes('gw-secret-token'), 'the token is in the output channel');
            // An empty answer removes it again.
            recorded.inputBox = () => '';
            assert.equal(await recorded.commands.get('cfgate.setGatewayToken')!(), false);
            assert.equal(await (context as any).secrets.get('cfgate.gatewayToken'), undefined);
        } finally {
            recorded.inputBox = undefined;
        }
    });

    test('a daemon that dies is reported; cfgate.restart brings it back', async () => {
        const [pid] = cfgateChildren();
        process.kill(pid, 'SIGKILL');
        // Wait for the client to see the connection close: a request written into the dead
        // pipe before that hits a vscode-jsonrpc 8.2 bug (an unhandled rejection from
        // sendRequest's async executor) that fails whichever test is running.
        await waitFor('the client to report the daemon stopped', () =>
            recorded.messages.find((m) => m.message.startsWith('cfgate: the daemon stopped')),
        );
        recorded.messages.length = 0;
        assert.equal(await status(), undefined);
        const shown = recorded.messages.at(-1)!;
        assert.equal(shown.level, 'error');
        assert.match(shown.message, /^cfgate: the daemon is not running — .*Restart Daemon/);
        await recorded.commands.get('cfgate.restart')!();
        const s = await waitFor('status after the restart', status);
        assert.equal(s.credentials_complete, true);
        assert.equal(cfgateChildren().length, 1);
        assert.notEqual(cfgateChildren()[0], pid);
    });

    test('inline completions send the context the daemon\'s completion_context_chars allows', async () => {
        // The daemon's own value (its config file), read from cfgate/status after the restart.
        const config = path.join(home, 'budget.toml');
        fs.writeFileSync(config, 'completion_context_chars = 40\n');
        process.env.CFGATE_CONFIG = config;
        const provider = recorded.inlineProviders[0].provider as vscode.InlineCompletionItemProvider;
        try {
            await recorded.commands.get('cfgate.restart')!();
            assert.equal((await status())?.completion_context_chars, 40);
            await fake.reset();
            await fake.script({ content: 'y' });
            const { document, position } = splitAt('first line here\nsecond line é\nthird |x\nafter one\nafter two\nafter three');
            const items = (await provider.provideInlineCompletionItems(document, position, inlineContext, tokenSource().vscodeToken)) as any[];
            assert.equal(items?.length, 1, JSON.stringify(recorded.messages));
            const [request] = await chatRequests();
            const sent = JSON.stringify(request.body.messages);
            assert.ok(sent.includes(JSON.stringify('second line é\nthird <CURSOR>x\n').slice(1, -1)), sent);
            assert.ok(!sent.includes('first line here') && !sent.includes('after one'), sent);
        } finally {
            delete process.env.CFGATE_CONFIG;
            await recorded.commands.get('cfgate.restart')!();
        }
        assert.equal((await status())?.completion_context_chars, 8000);
    });

    test('deactivate stops the daemon', async () => {
        assert.equal(cfgateChildren().length, 1);
        await extension.deactivate();
        await waitFor('no cfgate process left', () => cfgateChildren().length === 0);
    });
});
