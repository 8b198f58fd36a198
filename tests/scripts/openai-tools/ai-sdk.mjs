// The Vercel AI SDK's OpenAI-compatible provider (as opencode and other agents use it)
// against cfgate's endpoint, set up as docs/openai.md says.
// Usage: node ai-sdk.mjs BASE_URL KEY SCENARIO MODEL; prints one JSON object.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, scenario, model] = process.argv.slice(2);
const cfgate = createOpenAICompatible({ name: "cfgate", baseURL, apiKey, includeUsage: true });
const common = { model: cfgate(model), maxRetries: 0, abortSignal: AbortSignal.timeout(30000) };
const weather = {
  get_weather: tool({
    description: "The weather in a city",
    inputSchema: z.object({ city: z.string() }),
  }),
};
let out;

if (scenario === "generate") {
  const r = await generateText({ ...common, prompt: "hello from the ai sdk" });
  out = { text: r.text, finish: r.finishReason, usage: r.usage };
} else if (scenario === "stream") {
  let error = null;
  const r = streamText({
    ...common,
    messages: [{ role: "user", content: "stream from the ai sdk" }],
    onError: ({ error: e }) => { error = String(e); },
  });
  const parts = [];
  for await (const part of r.textStream) parts.push(part);
  out = { parts, joined: parts.join(""), finish: await r.finishReason, usage: await r.usage, error };
} else if (scenario === "tools") {
  const r = await generateText({ ...common, tools: weather, prompt: "weather in Paris?" });
  out = {
    calls: r.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
    finish: r.finishReason,
  };
} else if (scenario === "tools_stream") {
  let error = null;
  const r = streamText({
    ...common,
    tools: weather,
    prompt: "weather in Paris?",
    onError: ({ error: e }) => { error = String(e); },
  });
  await r.consumeStream();
  const calls = await r.toolCalls;
  out = {
    calls: calls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
    finish: await r.finishReason,
    error,
  };
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
console.log(JSON.stringify(out));
