// The protocol layer (src/client.ts) against the real `cfgate serve` and fake gateway.

import { after, before, beforeEach, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { CancellationTokenSource, ResponseError } from 'vscode-jsonrpc/node';
import { ChatResult, ErrorCodes, Piece, formatError, isCancellation } from '../src/client';
import { readSettings } from '../src/settings';
import { DEADLINE_MS, Daemon, FakeGateway, alive, reapDaemons, startedDaemons, waitFor, withTimeout } from '../testlib/harness';

let fake: FakeGateway;
let daemon: Daemon;

before(async () => {
    fake = await FakeGateway.start();
    daemon = await Daemon.start(fake);
});

after(async () => {
    if (daemon && alive(daemon.process)) {
        await daemon.close();
    }
    await fake?.stop();
    const left = await reapDaemons();
    assert.deepEqual(left, [], 'cfgate serve processes left running');
});

beforeEach(async () => {
    await fake.reset();
});

async function chatRequests(): Promise<any[]> {
    return (await fake.requests()).filter((r) => r.path.endsWith('/chat/completions'));
}

describe('cfgate protocol layer', () => {
    test('initialize advertises cfgate methods', () => {
        const result = daemon.initializeResult as any;
        assert.deepEqual(result.capabilities.experimental.cfgate.methods, [
            'cfgate/chat',
            'cfgate/complete',
            'cfgate/status',
            'cfgate/models',
            'cfgate/sessions',
            'cfgate/session',
            'cfgate/sessionDelete',
        ]);
        assert.equal(result.serverInfo.name, 'cfgate');
    });

    test('streamed chat: content reports arrive before the answer and join to its content', async () => {
        await fake.script({ chunks: ['Hel', 'lo, ', 'stream', 'ed ', 'world'] });
        const events: string[] = [];
        const pieces: Piece[] = [];
        const result = await daemon.client.chat({ messages: [{ role: 'user', content: 'say hello' }] }, (piece) => {
            events.push('piece');
            pieces.push(piece);
        });
        events.push('answer');
        assert.equal(result.content, 'Hello, streamed world');
        const content = pieces.map((p) => p.content ?? '').join('');
        assert.equal(content, result.content);
        assert.ok(pieces.length >= 2, `expected several pieces, got ${JSON.stringify(pieces)}`);
        assert.equal(events.at(-1), 'answer');
        assert.ok(events.slice(0, -1).every((e) => e === 'piece'));
        assert.equal(result.finish_reason, 'stop');
        const [request] = await chatRequests();
        assert.equal(request.body.stream, true, 'with a workDoneToken the upstream request streams');
        assert.deepEqual(request.body.messages.at(-1), { role: 'user', content: 'say hello' });
    });

    test('chat without a progress callback is not streamed', async () => {
        const result = await daemon.client.chat({ messages: [{ role: 'user', content: 'plain question' }] });
        assert.equal(result.content, 'echo: plain question');
        const [request] = await chatRequests();
        assert.notEqual(request.body.stream, true);
    });

    test('concurrent chats: progress is routed by token', async () => {
        const run = async (text: string) => {
            let joined = '';
            const result = await daemon.client.chat({ messages: [{ role: 'user', content: text }] }, (p) => {
                joined += p.content ?? '';
            });
            return { joined, result };
        };
        const [a, b, c] = await Promise.all([run('alpha one two three'), run('beta four five'), run('gamma six')]);
        assert.equal(a.result.content, 'echo: alpha one two three');
        assert.equal(a.joined, a.result.content);
        assert.equal(b.result.content, 'echo: beta four five');
        assert.equal(b.joined, b.result.content);
        assert.equal(c.result.content, 'echo: gamma six');
        assert.equal(c.joined, c.result.content);
    });

    test('complete: prefix and suffix reach the gateway; streamed pieces join to text', async () => {
        await fake.script({ chunks: ['return ', 'a + b'] });
        const prefix = 'def add(a, b):\n    ';
        const suffix = '\n\nprint(add(1, 2))\n';
        let joined = '';
        const result = await daemon.client.complete({ prefix, suffix, language: 'python', path: '/tmp/add.py' }, (p) => {
            joined += p.content ?? '';
        });
        assert.equal(result.text, 'return a + b');
        assert.equal(joined, result.text);
        const [request] = await chatRequests();
        const user = request.body.messages.find((m: any) => m.role === 'user');
        assert.ok(user, 'a user message');
        assert.ok(user.content.includes(`${prefix}<CURSOR>${suffix}`), user.content);
        assert.ok(user.content.includes('Language: python'), user.content);
        assert.ok(user.content.includes('File: /tmp/add.py'), user.content);
    });

    test('cancellation: the request answers -32800 and the upstream stream is dropped', async () => {
        const before = (await fake.stats()).streams_dropped;
        await fake.script({ chunks: ['partial ', 'answer '], hold_open: true });
        const source = new CancellationTokenSource();
        let firstPiece: () => void;
        const gotPiece = new Promise<void>((resolve) => (firstPiece = resolve));
        const pending = daemon.client.chat(
            { messages: [{ role: 'user', content: 'never ends' }] },
            () => firstPiece(),
            source.token,
        );
        const outcome = pending.then(
            (r) => ({ ok: true as const, r }),
            (e) => ({ ok: false as const, e }),
        );
        await Promise.race([gotPiece, outcome]);
        source.cancel();
        const settled = await outcome;
        assert.equal(settled.ok, false, 'a cancelled request must not succeed');
        const error = (settled as { e: unknown }).e;
        assert.ok(error instanceof ResponseError, String(error));
        assert.equal(error.code, ErrorCodes.RequestCancelled);
        assert.ok(isCancellation(error));
        const stats = await waitFor('the fake to see the stream dropped', async () => {
            const s = await fake.stats();
            return s.streams_dropped > before ? s : undefined;
        });
        assert.ok(stats.streams_dropped >= 1);
        // The daemon goes on serving.
        const next = await daemon.client.chat({ messages: [{ role: 'user', content: 'still there' }] });
        assert.equal(next.content, 'echo: still there');
    });

    test('a token cancelled before sending rejects without a request', async () => {
        const source = new CancellationTokenSource();
        source.cancel();
        await assert.rejects(daemon.client.complete({ prefix: 'x = ' }, undefined, source.token), (e: unknown) =>
            isCancellation(e),
        );
        assert.equal((await chatRequests()).length, 0);
    });

    test('upstream error: code, data.hint, and "cfgate: message — hint"', async () => {
        await fake.script({
            status: 400,
            body: JSON.stringify({
                success: false,
                error: [{ code: 2008, message: 'Invalid provider' }],
            }),
        });
        const error = await daemon.client.chat({ messages: [{ role: 'user', content: 'hi' }] }, () => undefined).then(
            () => assert.fail('expected an error'),
            (e: unknown) => e,
        );
        assert.ok(error instanceof ResponseError, String(error));
        assert.equal(error.code, 1010);
        const data = error.data as { kind: string; status: number; upstream_code: number; hint: string };
        assert.equal(data.kind, 'upstream');
        assert.equal(data.status, 400);
        assert.equal(data.upstream_code, 2008);
        assert.ok(typeof data.hint === 'string' && data.hint.length > 0, 'a hint');
        assert.equal(formatError(error), `cfgate: ${error.message} — ${data.hint}`);
        assert.ok(!isCancellation(error));
    });

    test('an invalid model is refused before any request, with a hint', async () => {
        const error = await daemon.client.chat({ messages: [{ role: 'user', content: 'hi' }], model: 'nomodel' }).then(
            () => assert.fail('expected an error'),
            (e: unknown) => e as ResponseError<any>,
        );
        assert.equal(error.code, ErrorCodes.InvalidModel);
        assert.match(formatError(error), /^cfgate: .+/);
        assert.equal((await chatRequests()).length, 0);
    });

    test('status reports the settings in force', async () => {
        const status = await daemon.client.status();
        assert.equal(status.credentials_complete, true);
        assert.deepEqual(status.missing, []);
        assert.equal(status.settings_error, null);
        assert.equal(status.base_url, fake.baseUrl);
        assert.ok(typeof status.version === 'string' && status.version.length > 0);
        assert.ok(status.requests.total >= 1);
        assert.ok(!JSON.stringify(status).includes('test-token'), 'the token is never returned');
    });

    test('didChangeConfiguration with the extension settings changes the model', async () => {
        const values: Record<string, unknown> = { model: 'openai/gpt-4o-mini', maxTokens: 77, baseUrl: fake.baseUrl };
        const mapped = readSettings((key) => values[key]).daemon;
        assert.deepEqual(mapped, { model: 'openai/gpt-4o-mini', max_tokens: 77, base_url: fake.baseUrl });
        await daemon.connection.sendNotification('workspace/didChangeConfiguration', { settings: { cfgate: mapped } });
        const result: ChatResult = await daemon.client.chat({ messages: [{ role: 'user', content: 'which model' }] });
        assert.equal(result.model, 'openai/gpt-4o-mini');
        const [request] = await chatRequests();
        assert.equal(request.body.model, 'openai/gpt-4o-mini');
        assert.equal(request.body.max_tokens, 77);
        assert.equal((await daemon.client.status()).model, 'openai/gpt-4o-mini');
    });
});

describe('daemon lifecycle', () => {
    test('missing credentials: error 1001 names the variable and carries a hint', async () => {
        const d = await Daemon.start(fake, { env: { CLOUDFLARE_API_TOKEN: null } });
        try {
            const status = await d.client.status();
            assert.equal(status.credentials_complete, false);
            assert.ok(status.missing.includes('CLOUDFLARE_API_TOKEN'));
            const error = await d.client.chat({ messages: [{ role: 'user', content: 'hi' }] }).then(
                () => assert.fail('expected an error'),
                (e: unknown) => e as ResponseError<any>,
            );
            assert.equal(error.code, ErrorCodes.MissingCredentials);
            assert.match(error.message, /CLOUDFLARE_API_TOKEN/);
            assert.match(formatError(error), /^cfgate: .*CLOUDFLARE_API_TOKEN.* — .+/);
        } finally {
            await d.close();
        }
    });

    test('invalid initializationOptions fail initialize with -32602 naming the key', async () => {
        await assert.rejects(Daemon.start(fake, { settings: { baseUrl: 'camelCase is not a daemon key' } }), (e: unknown) => {
            assert.ok(e instanceof ResponseError, String(e));
            assert.equal(e.code, ErrorCodes.InvalidParams);
            assert.match(e.message, /baseUrl/);
            return true;
        });
        const child = startedDaemons.at(-1)!;
        child.stdin!.end();
        await waitFor('the refused daemon to exit', () => !alive(child));
    });

    test('the daemon exits when the connection is disposed and stdin closed', async () => {
        const d = await Daemon.start(fake);
        assert.equal((await d.client.status()).credentials_complete, true);
        const status = await d.close();
        assert.deepEqual(status, { code: 0, signal: null });
    });

    test('closing stdin drops a request in flight and its upstream stream', async () => {
        const d = await Daemon.start(fake);
        const before = (await fake.stats()).streams_dropped;
        await fake.script({ chunks: ['open '], hold_open: true });
        let gotPiece: () => void;
        const piece = new Promise<void>((resolve) => (gotPiece = resolve));
        const pending = d.client.chat({ messages: [{ role: 'user', content: 'forever' }] }, () => gotPiece());
        pending.catch(() => undefined);
        await piece;
        const status = await d.close();
        assert.equal(status.code, 0);
        await waitFor('the fake to see the stream dropped', async () => (await fake.stats()).streams_dropped > before);
    });

    test('shutdown then exit ends the process with code 0', async () => {
        const d = await Daemon.start(fake);
        await d.connection.sendRequest('shutdown');
        await d.connection.sendNotification('exit');
        const status = await withTimeout(d.exited, DEADLINE_MS, 'exit after shutdown and exit');
        assert.deepEqual(status, { code: 0, signal: null });
        await d.close();
    });
});
