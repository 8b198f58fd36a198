// The extension's own logic (inline provider, chat participant, commands, settings) with
// `vscode` faked only at its edge; where a daemon is needed it is the real one.

import { after, before, beforeEach, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as vscode from 'vscode';
import { ResponseError } from 'vscode-jsonrpc/node';
import { CfgateClient, CompleteParams, CompleteResult, ErrorCodes, StatusResult } from '../src/client';
import { PARTICIPANT_ID, SYSTEM_PROMPT, buildMessages, createChatHandler } from '../src/chat';
import {
    CUSTOM_LABEL,
    DEFAULT_LABEL,
    PickItem,
    SelectModelUi,
    selectModel,
    showStatus,
    statusSummary,
    validateModelId,
} from '../src/commands';
import { CfgateInlineCompletionProvider, PREFIX_BUDGET, SUFFIX_BUDGET, contextAround } from '../src/inline';
import { DAEMON_KEYS, readSettings, replacingSettings, settingsChange } from '../src/settings';
import { ACTIONS, CfgateCodeActionProvider, askAboutSelection, replacement, runAction } from '../src/actions';
import { statusBarText } from '../src/status';
import { NEW_SESSION_LABEL, NO_SESSION_LABEL, historyMarkdown, pickSession, validateSessionName } from '../src/sessions';
import { Daemon, FakeGateway, reapDaemons, waitFor } from '../testlib/harness';
import {
    Position,
    Range as FakeRange,
    RecordingStream,
    chatRequest,
    fakeDocument,
    inlineContext,
    requestTurn,
    responseTurn,
    splitAt,
    tokenSource,
    vs,
} from '../testlib/fakes';

let fake: FakeGateway;
let daemon: Daemon;

before(async () => {
    fake = await FakeGateway.start();
    daemon = await Daemon.start(fake);
});

after(async () => {
    await daemon?.close();
    await fake?.stop();
    assert.deepEqual(await reapDaemons(), [], 'cfgate serve processes left running');
});

beforeEach(async () => {
    await fake.reset();
});

async function chatRequests(): Promise<any[]> {
    return (await fake.requests()).filter((r) => r.path.endsWith('/chat/completions'));
}

/** A client that records calls instead of talking to a daemon. */
function recordingClient(answer: (params: CompleteParams) => Promise<CompleteResult> | CompleteResult) {
    const calls: { params: CompleteParams; token: unknown }[] = [];
    const client = {
        complete: async (params: CompleteParams, _onPiece?: unknown, token?: unknown) => {
            calls.push({ params, token });
            return answer(params);
        },
    } as Pick<CfgateClient, 'complete'>;
    return { client, calls };
}

const noDebounce = () => ({ enabled: true, debounceMs: 0 });

describe('inline completion provider', () => {
    test('returns the daemon\'s insertion at the cursor; prefix and suffix reach the gateway', async () => {
        await fake.script({ chunks: ['return ', 'a + b'] });
        const { document, position, prefix, suffix } = splitAt('def add(a, b):\n    |\n\nprint(add(1, 2))\n');
        const errors: string[] = [];
        const provider = new CfgateInlineCompletionProvider({
            client: daemon.client,
            settings: noDebounce,
            vs,
            onError: (m) => errors.push(m),
        });
        const items = await provider.provideInlineCompletionItems(document, position, inlineContext, tokenSource().vscodeToken);
        assert.deepEqual(errors, []);
        assert.ok(items && items.length === 1, `one item, got ${JSON.stringify(items)}`);
        const item = items[0] as unknown as { insertText: string; range: { start: Position; end: Position } };
        assert.equal(item.insertText, 'return a + b');
        assert.deepEqual(item.range.start, position);
        assert.deepEqual(item.range.end, position);
        const [request] = await chatRequests();
        const user = request.body.messages.find((m: any) => m.role === 'user');
        assert.ok(user.content.includes(`${prefix}<CURSOR>${suffix}`), user.content);
        assert.ok(user.content.includes('Language: python'));
        assert.ok(user.content.includes('File: /work/project/example.py'));
    });

    test('cancelling the token sends $/cancelRequest: no item, no error, request ended', async () => {
        // The gateway never answers: only the cancellation can end the request.
        await fake.script({ fault: 'stall_before_headers' });
        const { document, position } = splitAt('x = |\n');
        const errors: string[] = [];
        const provider = new CfgateInlineCompletionProvider({
            client: daemon.client,
            settings: noDebounce,
            vs,
            onError: (m) => errors.push(m),
        });
        const source = tokenSource();
        const pending = provider.provideInlineCompletionItems(document, position, inlineContext, source.vscodeToken);
        await waitFor('the request to reach the gateway', async () => (await chatRequests()).length === 1);
        assert.equal((await daemon.client.status()).requests.in_flight, 1);
        source.cancel();
        assert.equal(await pending, undefined);
        assert.deepEqual(errors, []);
        await waitFor('the daemon to end the request', async () => (await daemon.client.status()).requests.in_flight === 0);
    });

    test('an upstream failure is reported as "cfgate: message — hint"', async () => {
        await fake.script({
            status: 401,
            body: JSON.stringify({ success: false, errors: [{ code: 10000, message: 'Authentication error' }] }),
        });
        const { document, position } = splitAt('x = |\n');
        const errors: string[] = [];
        const provider = new CfgateInlineCompletionProvider({ client: daemon.client, settings: noDebounce, vs, onError: (m) => errors.push(m) });
        const items = await provider.provideInlineCompletionItems(document, position, inlineContext, tokenSource().vscodeToken);
        assert.equal(items, undefined);
        assert.equal(errors.length, 1);
        assert.match(errors[0], /^cfgate: .+ — .+/);
    });

    test('disabled: no request', async () => {
        const { client, calls } = recordingClient(() => ({ text: 'x', finish_reason: 'stop', model: 'm', usage: null }));
        const provider = new CfgateInlineCompletionProvider({ client, settings: () => ({ enabled: false, debounceMs: 0 }), vs });
        const { document, position } = splitAt('a = |');
        assert.equal(await provider.provideInlineCompletionItems(document, position, inlineContext, tokenSource().vscodeToken), undefined);
        assert.equal(calls.length, 0);
    });

    test('cancelled while debouncing: no request', async () => {
        const { client, calls } = recordingClient(() => ({ text: 'x', finish_reason: 'stop', model: 'm', usage: null }));
        const provider = new CfgateInlineCompletionProvider({ client, settings: () => ({ enabled: true, debounceMs: 5000 }), vs });
        const { document, position } = splitAt('a = |');
        const source = tokenSource();
        const started = Date.now();
        const pending = provider.provideInlineCompletionItems(document, position, inlineContext, source.vscodeToken);
        setTimeout(() => source.cancel(), 20);
        assert.equal(await pending, undefined);
        assert.ok(Date.now() - started < 4000, 'returns at once on cancellation');
        assert.equal(calls.length, 0);
    });

    test('debounce passes, the token is handed to the client, empty text gives no item', async () => {
        const { client, calls } = recordingClient(() => ({ text: '', finish_reason: 'stop', model: 'm', usage: null }));
        const provider = new CfgateInlineCompletionProvider({ client, settings: () => ({ enabled: true, debounceMs: 10 }), vs });
        const { document, position } = splitAt('a = |');
        const source = tokenSource();
        assert.equal(await provider.provideInlineCompletionItems(document, position, inlineContext, source.vscodeToken), undefined);
        assert.equal(calls.length, 1);
        assert.equal(calls[0].token, source.vscodeToken);
        assert.deepEqual(calls[0].params, { prefix: 'a = ', suffix: '', language: 'python', path: '/work/project/example.py' });
        // In the extension the path is relative to the workspace folder, and the budget the daemon's.
        const relative = new CfgateInlineCompletionProvider({
            client,
            settings: () => ({ enabled: true, debounceMs: 0 }),
            vs,
            relativePath: (d) => d.fileName.replace('/work/project/', ''),
            contextChars: () => 4,
        });
        await relative.provideInlineCompletionItems(splitAt('abc = |1').document, splitAt('abc = |1').position, inlineContext, source.vscodeToken);
        assert.deepEqual(calls[1].params, { prefix: ' = ', suffix: '1', language: 'python', path: 'example.py' });
    });

    test('an empty document asks nothing', async () => {
        const { client, calls } = recordingClient(() => ({ text: 'x', finish_reason: 'stop', model: 'm', usage: null }));
        const provider = new CfgateInlineCompletionProvider({ client, settings: noDebounce, vs });
        const document = fakeDocument('   \n');
        assert.equal(await provider.provideInlineCompletionItems(document, new Position(1, 0) as vscode.Position, inlineContext, tokenSource().vscodeToken), undefined);
        assert.equal(calls.length, 0);
    });

    test('context is bounded to the budget and cut at line boundaries', () => {
        const lines = Array.from({ length: 2000 }, (_, i) => `line ${i} ${'x'.repeat(i % 17)}`);
        const text = lines.join('\n') + '\n';
        const document = fakeDocument(text);
        const position = new Position(1000, 3) as vscode.Position;
        const { prefix, suffix } = contextAround(document, position, vs.Range);
        assert.ok(prefix.length <= PREFIX_BUDGET && prefix.length > PREFIX_BUDGET - 100, `prefix ${prefix.length}`);
        assert.ok(suffix.length <= SUFFIX_BUDGET && suffix.length > SUFFIX_BUDGET - 100, `suffix ${suffix.length}`);
        assert.ok(prefix.endsWith('\nlin'), 'prefix ends at the cursor');
        assert.ok(suffix.startsWith(`e 1000 `), 'suffix starts at the cursor');
        assert.match(prefix, /^line \d+/, 'prefix starts at a line start');
        assert.ok(suffix.endsWith('\n'), 'suffix ends at a line end');
        const offset = document.offsetAt(position);
        assert.equal(text.slice(offset - prefix.length, offset + suffix.length), prefix + suffix);
        // Small documents are sent whole.
        const small = splitAt('one\ntw|o\nthree');
        assert.deepEqual(contextAround(small.document, small.position, vs.Range), { prefix: 'one\ntw', suffix: 'o\nthree' });
        // The daemon's budget, split as the daemon splits it (the same cases as Neovim's and Emacs's tests).
        const third = splitAt('first line here\nsecond line é\nthird |x\nafter one\nafter two\nafter three');
        assert.deepEqual(contextAround(third.document, third.position, vs.Range, 40), { prefix: 'second line é\nthird ', suffix: 'x\n' });
        const short = splitAt(`${'a'.repeat(50)}|zz`);
        assert.deepEqual(contextAround(short.document, short.position, vs.Range, 40), { prefix: 'a'.repeat(38), suffix: 'zz' });
    });
});

describe('chat participant', () => {
    test('history becomes messages: this participant only, failed answers left out', () => {
        const context = {
            history: [
                requestTurn('first question'),
                responseTurn('first answer'),
                requestTurn('for someone else', 'other.participant'),
                responseTurn('their answer', 'other.participant'),
                requestTurn('second question'),
                responseTurn('partial', PARTICIPANT_ID, { errorDetails: { message: 'cfgate: failed' } }),
            ],
        } as unknown as vscode.ChatContext;
        assert.deepEqual(buildMessages(chatRequest('third question'), context), [
            { role: 'system', content: SYSTEM_PROMPT },
            { role: 'user', content: 'first question' },
            { role: 'assistant', content: 'first answer' },
            { role: 'user', content: 'second question' },
            { role: 'user', content: 'third question' },
        ]);
    });

    test('streams cfgate/chat progress into stream.markdown', async () => {
        await fake.script({ chunks: ['The ', 'answer ', 'is ', '**42**.'] });
        const handler = createChatHandler({ client: daemon.client });
        const stream = new RecordingStream();
        const context = { history: [requestTurn('earlier'), responseTurn('earlier answer')] } as unknown as vscode.ChatContext;
        const result = (await handler(chatRequest('what is it?'), context, stream.asStream(), tokenSource().vscodeToken)) as vscode.ChatResult;
        assert.deepEqual(stream.markdown, ['The ', 'answer ', 'is ', '**42**.']);
        assert.equal(result.errorDetails, undefined);
        assert.equal(result.metadata?.finish_reason, 'stop');
        const [request] = await chatRequests();
        assert.deepEqual(
            request.body.messages.map((m: any) => [m.role, m.content]).slice(1),
            [
                ['user', 'earlier'],
                ['assistant', 'earlier answer'],
                ['user', 'what is it?'],
            ],
        );
    });

    test('cancellation stops the stream without an error', async () => {
        const before = (await fake.stats()).streams_dropped;
        await fake.script({ chunks: ['thinking ', 'about it '], hold_open: true });
        const handler = createChatHandler({ client: daemon.client });
        const source = tokenSource();
        const markdown: string[] = [];
        const stream = {
            markdown: (s: string) => {
                markdown.push(s);
                source.cancel();
            },
            progress: () => undefined,
        } as unknown as vscode.ChatResponseStream;
        const result = (await handler(chatRequest('go on forever'), { history: [] }, stream, source.vscodeToken)) as vscode.ChatResult;
        assert.equal(result.errorDetails, undefined);
        assert.equal(result.metadata?.cancelled, true);
        assert.ok(markdown.length >= 1);
        await waitFor('the stream to be dropped', async () => (await fake.stats()).streams_dropped > before);
    });

    test('a failure becomes errorDetails "cfgate: message — hint"', async () => {
        await fake.script({ status: 400, body: JSON.stringify({ success: false, error: [{ code: 2008, message: 'Invalid provider' }] }) });
        const errors: string[] = [];
        const handler = createChatHandler({ client: daemon.client, onError: (m) => errors.push(m) });
        const stream = new RecordingStream();
        const result = (await handler(chatRequest('hi'), { history: [] }, stream.asStream(), tokenSource().vscodeToken)) as vscode.ChatResult;
        assert.ok(result.errorDetails, 'errorDetails');
        assert.match(result.errorDetails.message, /^cfgate: .+ — .+/);
        assert.deepEqual(errors, [result.errorDetails.message]);
        assert.deepEqual(stream.markdown, []);
    });

    test('an empty prompt asks nothing', async () => {
        const stream = new RecordingStream();
        const client = { chat: () => assert.fail('no request expected') } as unknown as Pick<CfgateClient, 'chat'>;
        await createChatHandler({ client })(chatRequest('  '), { history: [] }, stream.asStream(), tokenSource().vscodeToken);
        assert.equal(stream.markdown.length, 1);
    });
});

describe('sessions', () => {
    test('@cfgate on a session sends only the new turn; another daemon on the same store continues it', async () => {
        const store = fs.mkdtempSync(path.join(os.tmpdir(), 'cfgate-vscode-sessions-'));
        const first = await Daemon.start(fake, { env: { CFGATE_DATA_DIR: store } });
        const second = await Daemon.start(fake, { env: { CFGATE_DATA_DIR: store } });
        try {
            const ask = async (client: CfgateClient, prompt: string, history: unknown[] = []) => {
                const stream = new RecordingStream();
                const handler = createChatHandler({ client, session: () => 'proj' });
                const context = { history } as unknown as vscode.ChatContext;
                const result = (await handler(chatRequest(prompt), context, stream.asStream(), tokenSource().vscodeToken)) as vscode.ChatResult;
                assert.equal(result.errorDetails, undefined);
                assert.deepEqual(stream.progress, history.length === 0 ? ['Continuing cfgate session proj'] : []);
                return stream.markdown.join('');
            };
            assert.equal(await ask(first.client, 'first question'), 'echo: first question');
            // A new chat in another window (another client): the chat view's own history
            // is empty, the daemon supplies the session's.
            assert.equal(await ask(second.client, 'second question'), 'echo: second question');
            // Within one chat, the chat view's earlier turns are not sent again.
            assert.equal(
                await ask(first.client, 'third question', [requestTurn('second question'), responseTurn('echo: second question')]),
                'echo: third question',
            );
            const sent = (await chatRequests()).map((r) => r.body.messages.map((m: any) => `${m.role}: ${m.content}`));
            assert.equal(sent.length, 3);
            assert.deepEqual(sent[0], [`system: ${SYSTEM_PROMPT}`, 'user: first question']);
            assert.deepEqual(sent[2], [
                `system: ${SYSTEM_PROMPT}`,
                'user: first question',
                'assistant: echo: first question',
                'user: second question',
                'assistant: echo: second question',
                'user: third question',
            ]);
            // The picker lists it; the history document shows every client's turns.
            let offered: string[] = [];
            const name = await pickSession(
                second.client,
                {
                    showQuickPick: async (items) => {
                        offered = items.map((i) => i.label);
                        return items[0];
                    },
                    showInputBox: async () => assert.fail('no input expected'),
                },
                undefined,
            );
            assert.equal(name, 'proj');
            assert.deepEqual(offered, ['proj', NEW_SESSION_LABEL, NO_SESSION_LABEL]);
            const session = await second.client.session('proj');
            assert.equal(
                historyMarkdown('proj', session.messages),
                '# cfgate session proj\n\n## You\n\nfirst question\n\n## cfgate\n\necho: first question\n\n' +
                    '## You\n\nsecond question\n\n## cfgate\n\necho: second question\n\n' +
                    '## You\n\nthird question\n\n## cfgate\n\necho: third question\n',
            );
        } finally {
            await first.close();
            await second.close();
            fs.rmSync(store, { recursive: true, force: true });
        }
    });

    test('a new session name is asked for and validated; giving up changes nothing', async () => {
        const client = { sessions: async () => [] } as unknown as Pick<CfgateClient, 'sessions'>;
        const pick = (label: string, typed?: string) =>
            pickSession(client, { showQuickPick: async (items) => items.find((i) => i.label === label), showInputBox: async () => typed }, 'old');
        assert.equal(await pick(NEW_SESSION_LABEL, ' work-2 '), 'work-2');
        assert.equal(await pick(NEW_SESSION_LABEL, '.hidden'), undefined);
        assert.equal(await pick(NEW_SESSION_LABEL, undefined), undefined);
        assert.equal(await pick(NO_SESSION_LABEL), '');
        assert.equal(validateSessionName('a/b'), '1 to 64 letters, digits, ".", "_" or "-", not starting with "."');
        assert.equal(validateSessionName('x'.repeat(65)) !== undefined, true);
    });
});

describe('code actions and status', () => {
    class CodeAction {
        command: unknown;
        constructor(readonly title: string, readonly kind: unknown) {}
    }
    const codeActionVs = { CodeAction, CodeActionKind: { Empty: '', QuickFix: 'quickfix', RefactorRewrite: 'refactor.rewrite' } } as any;

    test('explain, fix and add docs are offered on a selection, not without one', () => {
        const document = fakeDocument('x = 1 +\ny = 2\n');
        const provider = new CfgateCodeActionProvider({ client: daemon.client, vs: codeActionVs });
        const selection = new FakeRange(new Position(0, 0), new Position(1, 0));
        const actions = provider.provideCodeActions(document, selection as unknown as vscode.Range) as any[];
        assert.deepEqual(
            actions.map((a) => [a.title, a.kind, a.command.command]),
            [
                ['cfgate: explain', '', 'cfgate.explainSelection'],
                ['cfgate: fix', 'quickfix', 'cfgate.fixSelection'],
                ['cfgate: add docs', 'refactor.rewrite', 'cfgate.addDocsSelection'],
            ],
        );
        assert.deepEqual(actions[1].command.arguments, [document.uri, selection]);
        const empty = new FakeRange(new Position(1, 0), new Position(1, 0));
        assert.deepEqual(provider.provideCodeActions(document, empty as unknown as vscode.Range), []);
        assert.equal(ACTIONS.length, 3);
    });

    test('fix replaces the selection with the model\'s code (fences dropped, line break kept); explain shows the answer', async () => {
        const document = fakeDocument('x = 1 +\ny = 2\n');
        const selection = new FakeRange(new Position(0, 0), new Position(1, 0)) as unknown as vscode.Range;
        const replaced: string[] = [];
        const shown: string[] = [];
        const errors: string[] = [];
        const ui = {
            showExplanation: (text: string) => void shown.push(text),
            replace: async (_d: unknown, range: vscode.Range, text: string) => {
                assert.equal(range, selection);
                replaced.push(text);
                return true;
            },
            showErrorMessage: (m: string) => void errors.push(m),
        };
        await fake.script({ content: '```python\nx = 1 + 1\n```' });
        assert.equal(await runAction('fix', daemon.client, document, selection, ui), 'x = 1 + 1\n');
        assert.deepEqual(replaced, ['x = 1 + 1\n']);
        const [request] = await chatRequests();
        assert.equal(request.body.messages[1].content, 'Language: python\n```\nx = 1 +\n\n```');
        await fake.script({ content: 'It adds one.' });
        await runAction('explain', daemon.client, document, selection, ui);
        assert.deepEqual(shown, ['It adds one.']);
        // A document changed meanwhile: nothing replaced, and the user is told.
        await fake.script({ content: 'x = 2' });
        const stale = { ...ui, replace: async () => false };
        assert.equal(await runAction('addDocs', daemon.client, document, selection, stale), undefined);
        assert.match(errors[0], /changed while the model was working/);
        assert.equal(replacement('a\r\n', 'b\n\n'), 'b\r\n');
    });

    test('ask about the selection sends the instruction and the selected code, and shows the answer', async () => {
        const document = fakeDocument('x = 1\ny = 2\nz = 3\n');
        const selection = new FakeRange(new Position(0, 0), new Position(2, 0)) as unknown as vscode.Range;
        const shown: string[] = [];
        const answer = await askAboutSelection(daemon.client, document, selection, 'what does it do?', {
            showExplanation: (t) => void shown.push(t),
            showErrorMessage: (m) => assert.fail(m),
        });
        assert.equal(answer, shown[0]);
        assert.ok(answer?.startsWith('echo: what does it do?'), answer);
        const [request] = await chatRequests();
        assert.equal(request.body.messages.at(-1).content, 'what does it do?\n\n```python\nx = 1\ny = 2\n\n```');
    });

    test('the status bar text says the daemon\'s state in the words the other editors use', () => {
        assert.equal(statusBarText({ state: 'busy' }).text, '$(sync~spin) cfgate: busy');
        assert.equal(statusBarText({ state: 'ready' }).text, '$(cloud) cfgate: ready');
        const error = statusBarText({ state: 'error', message: 'cannot reach the gateway' });
        assert.deepEqual([error.text, error.tooltip, error.error], ['$(error) cfgate: error', 'cfgate: cannot reach the gateway', true]);
        assert.equal(statusBarText(undefined).text, '$(circle-slash) cfgate');
        const limited = statusBarText({ state: 'rate_limited', message: 'a gateway answered 429: chat waits, completions are shed' });
        assert.deepEqual(
            [limited.text, limited.tooltip, limited.error, limited.warning],
            ['$(watch) cfgate: rate limited', 'cfgate: a gateway answered 429: chat waits, completions are shed', false, true],
        );
        assert.equal(statusBarText({ state: 'ready' }).warning, false);
    });
});

describe('commands', () => {
    function ui(picks: (items: PickItem[]) => PickItem | undefined, typed?: string) {
        const updates: (string | undefined)[] = [];
        const messages: string[] = [];
        const errors: string[] = [];
        const offered: PickItem[][] = [];
        const api: SelectModelUi = {
            showQuickPick: async (items) => {
                offered.push(items);
                return picks(items);
            },
            showInputBox: async (options) => {
                if (typed !== undefined) {
                    assert.equal(options.validateInput(typed), undefined);
                }
                return typed;
            },
            updateModel: async (model) => {
                updates.push(model);
            },
            showInformationMessage: (m) => messages.push(m),
            showErrorMessage: (m) => errors.push(m),
        };
        return { api, updates, messages, errors, offered };
    }

    test('select model: the quick pick offers the daemon\'s cfgate/models list, the current model first', async () => {
        const { api, updates, messages, errors, offered } = ui((items) => items.find((i) => i.label === 'openai/gpt-5-mini'));
        assert.equal(await selectModel(api, daemon.client, undefined), 'openai/gpt-5-mini');
        assert.deepEqual(errors, []);
        const listed = (await fake.requests()).filter((r) => r.method === 'GET' && r.path.endsWith('/compat/models'));
        assert.equal(listed.length, 1, 'the daemon asked the gateway for its list');
        assert.deepEqual(
            offered[0].map((i) => [i.label, i.description, i.detail]),
            [
                ['workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast', '(current)', 'workers-ai, $0.29 in / $2.25 out per M tokens'],
                ['workers-ai/@cf/google/gemma-4-26b-a4b-it', undefined, 'workers-ai, $0.1 in / $0.3 out per M tokens'],
                ['openai/gpt-5-mini', undefined, 'openai, $0.25 in / $2 out per M tokens'],
                ['google-ai-studio/gemini-2.5-flash', undefined, 'google-ai-studio, $0.3 in / $2.5 out per M tokens'],
                ['anthropic/claude-sonnet-4-5', undefined, 'anthropic'],
                [CUSTOM_LABEL, undefined, undefined],
                [DEFAULT_LABEL, undefined, '@cf/meta/llama-3.3-70b-instruct-fp8-fast'],
            ],
        );
        assert.deepEqual(updates, ['openai/gpt-5-mini']);
        assert.match(messages[0], /^cfgate: model set to openai\/gpt-5-mini/);
        // The configured model comes first, in the gateway's spelling when listed, else as is.
        const listedCurrent = ui(() => undefined);
        await selectModel(listedCurrent.api, daemon.client, 'openai/gpt-5-mini');
        assert.deepEqual(
            listedCurrent.offered[0].slice(0, 2).map((i) => [i.label, i.description]),
            [
                ['openai/gpt-5-mini', '(current)'],
                ['workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast', undefined],
            ],
        );
        const unlisted = ui(() => undefined);
        await selectModel(unlisted.api, daemon.client, 'vendor/custom-model');
        assert.deepEqual([unlisted.offered[0][0].label, unlisted.offered[0][0].description], ['vendor/custom-model', '(current)']);
        assert.equal(unlisted.offered[0].length, 8);
    });

    test('select model: a list that cannot be had shows its message and hint, and no quick pick', async () => {
        const unreachable = await Daemon.start(undefined, { settings: { base_url: 'http://127.0.0.1:9/v1', max_attempts: 1 } });
        try {
            const { api, updates, errors, offered } = ui((items) => items[0]);
            assert.equal(await selectModel(api, unreachable.client, undefined), undefined);
            assert.equal(errors.length, 1, JSON.stringify(errors));
            assert.match(errors[0], /^cfgate: cannot connect to the gateway at http:\/\/127\.0\.0\.1:9\/v1\/models: .* — check the network and base_url/);
            assert.deepEqual(offered, []);
            assert.deepEqual(updates, []);
        } finally {
            await unreachable.close();
        }
    });

    test('select model: a typed id, the default, or giving up', async () => {
        const typed = ui((items) => items.find((i) => i.label === CUSTOM_LABEL), 'dynamic/support');
        assert.equal(await selectModel(typed.api, daemon.client, 'openai/gpt-4o'), 'dynamic/support');
        assert.deepEqual(typed.updates, ['dynamic/support']);
        const reset = ui((items) => items.find((i) => i.label === DEFAULT_LABEL));
        assert.equal(await selectModel(reset.api, daemon.client, 'openai/gpt-4o'), '');
        assert.deepEqual(reset.updates, [undefined]);
        const none = ui(() => undefined);
        assert.equal(await selectModel(none.api, daemon.client, undefined), undefined);
        assert.deepEqual(none.updates, []);
    });

    test('model ids are validated as cfgate does', () => {
        assert.equal(validateModelId('@cf/meta/llama-3.1-8b-instruct'), undefined);
        assert.equal(validateModelId('openai/gpt-4o-mini'), undefined);
        assert.ok(validateModelId(''));
        assert.ok(validateModelId('gpt-4o'));
        assert.ok(validateModelId('openai/gpt 4o'));
    });

    test('status: shown from the real daemon', async () => {
        const lines: string[] = [];
        const shown: string[] = [];
        const status = await showStatus(daemon.client, {
            appendLine: (l) => lines.push(l),
            showInformationMessage: (m) => shown.push(`info ${m}`),
            showWarningMessage: (m) => shown.push(`warning ${m}`),
            showErrorMessage: (m) => shown.push(`error ${m}`),
        });
        assert.ok(status);
        assert.equal(shown.length, 1);
        assert.match(shown[0], /^info cfgate .*ready/);
        assert.ok(lines.some((l) => l.includes(fake.baseUrl)));
    });

    test('status: missing credentials warn; failures show "cfgate: message — hint"', async () => {
        const incomplete = { credentials_complete: false, missing: ['CLOUDFLARE_API_TOKEN'], settings_error: null } as unknown as StatusResult;
        const summary = statusSummary(incomplete);
        assert.equal(summary.level, 'warning');
        assert.match(summary.message, /CLOUDFLARE_API_TOKEN/);
        const shown: string[] = [];
        const failing = {
            status: async () => {
                throw new ResponseError(1002, 'invalid gateway_id', { kind: 'invalid_setting', hint: 'use letters and digits' });
            },
        };
        await showStatus(failing, {
            appendLine: () => undefined,
            showInformationMessage: (m) => shown.push(m),
            showWarningMessage: (m) => shown.push(m),
            showErrorMessage: (m) => shown.push(`error ${m}`),
        });
        assert.deepEqual(shown, ['error cfgate: invalid gateway_id — use letters and digits']);
    });
});

describe('settings', () => {
    test('cfgate.* settings map to the daemon\'s keys; empty ones are left out', () => {
        const values: Record<string, unknown> = {
            path: '/opt/cfgate',
            model: ' @cf/qwen/qwen2.5-coder-32b-instruct ',
            baseUrl: '',
            gatewayId: 'my-gw',
            accountId: 'acc123',
            maxTokens: null,
            'completion.enabled': false,
            'completion.debounceMs': 125,
            'chat.session': ' my-project ',
            shared: true,
        };
        assert.deepEqual(readSettings((k) => values[k]), {
            path: '/opt/cfgate',
            shared: true,
            daemon: { model: '@cf/qwen/qwen2.5-coder-32b-instruct', gateway_id: 'my-gw', account_id: 'acc123' },
            chatSession: 'my-project',
            completion: { enabled: false, debounceMs: 125 },
        });
        assert.deepEqual(readSettings(() => undefined), {
            path: 'cfgate',
            shared: false,
            daemon: {},
            chatSession: '',
            completion: { enabled: true, debounceMs: 150 },
        });
    });

    test('a change, a cleared key included, is notified; a new binary restarts', () => {
        const base = readSettings((k) => ({ model: 'openai/gpt-4o', maxTokens: 100 })[k as 'model']);
        const same = readSettings((k) => ({ model: 'openai/gpt-4o', maxTokens: 100, 'completion.debounceMs': 50 })[k as 'model']);
        const changed = readSettings((k) => ({ model: 'openai/gpt-4o-mini', maxTokens: 100 })[k as 'model']);
        const cleared = readSettings((k) => ({ maxTokens: 100 })[k as 'maxTokens']);
        const moved = readSettings((k) => ({ path: '/bin/cfgate', model: 'openai/gpt-4o', maxTokens: 100 })[k as 'model']);
        assert.equal(settingsChange(base, same), 'none');
        assert.equal(settingsChange(base, changed), 'notify');
        assert.equal(settingsChange(base, cleared), 'notify');
        assert.deepEqual(replacingSettings(cleared.daemon), { model: null, base_url: null, gateway_id: null, account_id: null, max_tokens: 100 });
        assert.equal(settingsChange(base, moved), 'restart');
        const shared = readSettings((k) => ({ shared: true, model: 'openai/gpt-4o', maxTokens: 100 })[k as 'model']);
        assert.equal(settingsChange(base, shared), 'restart');
    });

    test('package.json contributes exactly the settings, commands and participant the code uses', () => {
        const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
        const properties = Object.keys(manifest.contributes.configuration.properties).sort();
        const expected = ['path', 'shared', 'chat.session', 'completion.enabled', 'completion.debounceMs', ...DAEMON_KEYS.map(([s]) => s)].map((k) => `cfgate.${k}`).sort();
        assert.deepEqual(properties, expected);
        assert.ok(!properties.some((p) => /(api|gateway)_?token/i.test(p)), 'no token setting');
        assert.deepEqual(manifest.contributes.chatParticipants.map((p: { id: string }) => p.id), [PARTICIPANT_ID]);
        const source = fs.readFileSync(path.join(__dirname, '..', '..', 'src', 'extension.ts'), 'utf8');
        for (const command of manifest.contributes.commands.map((c: { command: string }) => c.command)) {
            assert.ok(source.includes(`registerCommand('${command}'`), `${command} is registered`);
        }
        assert.equal(manifest.engines.vscode, '^1.90.0');
        assert.equal(ErrorCodes.RequestCancelled, -32800);
    });
});
