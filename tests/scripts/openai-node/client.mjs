// The official `openai` npm package against cfgate's OpenAI-compatible endpoint.
// Usage: node client.mjs BASE_URL KEY SCENARIO MODEL; prints one JSON object.
import OpenAI from "openai";

const [baseURL, apiKey, scenario, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
let out;

if (scenario === "stream") {
  const stream = await client.chat.completions.create({
    model,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "from node" }],
  });
  const parts = [];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) if (choice.delta?.content) parts.push(choice.delta.content);
  }
  out = { parts, joined: parts.join(""), usage };
} else if (scenario === "completion") {
  const r = await client.completions.create({ model, prompt: "let x = ", suffix: ";\n", max_tokens: 16 });
  out = { text: r.choices[0].text, object: r.object };
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
console.log(JSON.stringify(out));
