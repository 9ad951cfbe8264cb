// The Node clients of tests/test_clients_matrix.py: `node matrix.mjs CLIENT SERVER_URL CELLS_JSON` runs every
// cell given (each {id, vendor, feature, model, prompt}) with that client against the server, one after the
// other, and prints one JSON line: {cell id: {text, parsed, error}}. The Python test asserts on it.
import Anthropic from "@anthropic-ai/sdk";
import { betaTool } from "@anthropic-ai/sdk/helpers/beta/json-schema";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, Output, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";

const [client, url, cellsJson] = process.argv.slice(2);
const WEATHER = {
  type: "object", properties: { city: { type: "string" }, celsius: { type: "integer" } },
  required: ["city", "celsius"], additionalProperties: false,
};
const CITY = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
const getWeather = ({ city }) => `sunny in ${city}`;
const CHAT_TOOLS = [{ type: "function", function: { name: "get_weather", description: "Current weather in a city", parameters: CITY } }];
const MESSAGES_TOOLS = [{ name: "get_weather", description: "Current weather in a city", input_schema: CITY }];

async function openaiNode({ feature, model, prompt }) {
  const api = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
  const messages = [{ role: "user", content: prompt }];
  if (feature === "plain") return { text: (await api.chat.completions.create({ model, messages })).choices[0].message.content };
  if (feature === "stream") {
    let text = "";
    for await (const chunk of await api.chat.completions.create({ model, messages, stream: true })) text += chunk.choices[0]?.delta?.content ?? "";
    return { text };
  }
  if (feature === "structured") {
    const format = { type: "json_schema", json_schema: { name: "weather", schema: WEATHER, strict: true } };
    return { parsed: JSON.parse((await api.chat.completions.create({ model, messages, response_format: format })).choices[0].message.content) };
  }
  if (feature === "agent") {
    const tools = [{ type: "function", function: { name: "get_weather", description: "Current weather in a city", parameters: CITY, parse: JSON.parse, function: getWeather } }];
    return { text: await api.chat.completions.runTools({ model, messages, tools }).finalContent() };
  }
  const extra = feature === "reasoning" ? { reasoning_effort: "low" } : {};
  for (;;) {
    const message = (await api.chat.completions.create({ model, messages, tools: CHAT_TOOLS, ...extra })).choices[0].message;
    messages.push(message); // the whole turn, reasoning state included
    if (!message.tool_calls?.length) return { text: message.content };
    for (const call of message.tool_calls) messages.push({ role: "tool", tool_call_id: call.id, content: getWeather(JSON.parse(call.function.arguments)) });
  }
}

async function anthropicNode({ feature, model, prompt }) {
  const api = new Anthropic({ baseURL: url, apiKey: "unused", maxRetries: 0 });
  const messages = [{ role: "user", content: prompt }];
  const base = { model, max_tokens: 2048, messages };
  const text = (content) => content.filter((b) => b.type === "text").map((b) => b.text).join("");
  if (feature === "plain") return { text: text((await api.messages.create(base)).content) };
  if (feature === "stream") return { text: await api.messages.stream(base).finalText() };
  if (feature === "structured") {
    const answer = await api.messages.create({ ...base, output_config: { format: { type: "json_schema", schema: WEATHER } } });
    return { parsed: JSON.parse(text(answer.content)) };
  }
  if (feature === "agent") {
    const weather = betaTool({ name: "get_weather", description: "Current weather in a city", inputSchema: CITY, run: getWeather });
    return { text: text((await api.beta.messages.toolRunner({ ...base, tools: [weather], thread: false })).content) };
  }
  const extra = feature === "reasoning" ? { thinking: { type: "enabled", budget_tokens: 1024 } } : {};
  for (;;) {
    const answer = await api.messages.create({ ...base, tools: MESSAGES_TOOLS, ...extra });
    messages.push({ role: "assistant", content: answer.content });
    const calls = answer.content.filter((b) => b.type === "tool_use");
    if (!calls.length) return { text: text(answer.content) };
    messages.push({ role: "user", content: calls.map((b) => ({ type: "tool_result", tool_use_id: b.id, content: getWeather(b.input) })) });
  }
}

function vercel(provider) {
  return async ({ vendor, feature, model, prompt }) => {
    const chosen = provider === "openai"
      ? createOpenAI({ baseURL: `${url}/v1`, apiKey: "unused" })(model)
      : createAnthropic({ baseURL: `${url}/v1`, apiKey: "unused" })(model);
    const common = { model: chosen, maxRetries: 0 };
    if (feature === "plain") return { text: (await generateText({ ...common, prompt })).text };
    if (feature === "stream") return { text: await streamText({ ...common, prompt }).text };
    if (feature === "structured") {
      const answer = await generateText({ ...common, prompt, output: Output.object({ schema: jsonSchema(WEATHER) }) });
      return { parsed: answer.output };
    }
    const inputSchema = jsonSchema(CITY);
    if (feature === "agent") {
      const tools = { get_weather: tool({ description: "Current weather in a city", inputSchema, execute: getWeather }) };
      return { text: (await generateText({ ...common, prompt, tools, stopWhen: stepCountIs(5) })).text };
    }
    const providerOptions = feature !== "reasoning" ? {}
      : provider === "openai" ? { openai: { reasoningEffort: "low", reasoningSummary: "auto", forceReasoning: true } } // a Claude or Gemini name is no reasoning model to it
        : { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } };
    const tools = { get_weather: tool({ description: "Current weather in a city", inputSchema }) };
    const messages = [{ role: "user", content: prompt }];
    for (;;) { // the loop by hand: the result's own messages, then the tool results
      const answer = await generateText({ ...common, messages, tools, providerOptions, maxOutputTokens: 2048 });
      messages.push(...answer.response.messages);
      if (!answer.toolCalls.length) return { text: answer.text };
      messages.push({
        role: "tool", content: answer.toolCalls.map((call) => ({
          type: "tool-result", toolCallId: call.toolCallId, toolName: call.toolName,
          output: { type: "text", value: getWeather(call.input) },
        })),
      });
    }
  };
}

const CLIENTS = { "openai-node": openaiNode, "anthropic-node": anthropicNode, "vercel-openai": vercel("openai"), "vercel-anthropic": vercel("anthropic") };
const results = {};
for (const cell of JSON.parse(cellsJson)) {
  try {
    results[cell.id] = await CLIENTS[client](cell);
  } catch (error) {
    results[cell.id] = { error: `${error?.constructor?.name}: ${error?.message}`.slice(0, 2000) };
  }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
