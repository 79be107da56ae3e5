// The conformance suite's Node app (issue 12): the Vercel AI SDK 6 and 7, set up the way their docs say,
// run the suite's cases against the local fake providers and export their spans over OTLP/HTTP with the
// OTel JS SDK's own exporter.
//
//     node app.mjs OTLP_TRACES_URL INSTRUMENTATION=FAKE_BASE_URL [INSTRUMENTATION=FAKE_BASE_URL ...]
//
// INSTRUMENTATION is vercel-ai-6 (`ai` 6 with `experimental_telemetry: {isEnabled: true}` on each call) or
// vercel-ai-7 (`ai` 7 with `registerTelemetry(new OpenTelemetry())` from @ai-sdk/otel once at startup).
// Both run in this one process (tests/test_conformance.py starts it once): each case runs under a root span
// of its own and sends the header `X-Conformance-Case`, so the test pairs the fake's exchanges with the
// collector's llm_calls rows. Prints JSON {instrumentation: {case: trace id}} as its last line.

import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

// The same prompts as tests/conformance_app.py: the system prompt is long enough to be cached.
const SYSTEM_PROMPT = "You are a travel assistant. Answer in one short sentence. ".repeat(100);
const QUESTION = "What is the capital of France?";
const WEATHER_QUESTION = "What's the weather in Paris?";
const WEATHER = "18 degrees and sunny";
const WEATHER_PARAMETERS = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
};
const CASE_HEADER = "X-Conformance-Case";
const FAKE_STATUS_HEADER = "X-Fake-Status"; // tests/fake_openai.py answers with this HTTP status
const API_KEY = "sk-fake-conformance";
const CACHE = { anthropic: { cacheControl: { type: "ephemeral" } } };

// What differs between the two SDK versions, in one place: their packages and the names 7 renamed.
async function sdk(instrumentation) {
  if (instrumentation === "vercel-ai-6") {
    const ai = await import("ai6");
    const { createOpenAI } = await import("ai6-openai");
    const { createAnthropic } = await import("ai6-anthropic");
    return {
      ai,
      createOpenAI,
      createAnthropic,
      stopAfter: ai.stepCountIs,
      options: { experimental_telemetry: { isEnabled: true } },
      instructions: (text) => ({ system: text }),
    };
  }
  if (instrumentation === "vercel-ai-7") {
    const ai = await import("ai");
    const { createOpenAI } = await import("@ai-sdk/openai");
    const { createAnthropic } = await import("@ai-sdk/anthropic");
    const { OpenTelemetry } = await import("@ai-sdk/otel");
    ai.registerTelemetry(new OpenTelemetry());
    return {
      ai,
      createOpenAI,
      createAnthropic,
      stopAfter: ai.isStepCount,
      options: {},
      instructions: (text) => ({ instructions: text }),
    };
  }
  throw new Error(`unknown instrumentation ${JSON.stringify(instrumentation)}`);
}

function weatherTool(s) {
  return {
    get_weather: s.ai.tool({
      description: "Current weather for a city",
      inputSchema: s.ai.jsonSchema(WEATHER_PARAMETERS),
      execute: async () => WEATHER,
    }),
  };
}

async function drain(result) {
  for await (const _ of result.textStream) {
    // read to the end: the span ends with the stream
  }
  await result.response;
}

// case -> (sdk, providers, the call's common options) => a run of the case. `openai.chat` is Chat
// Completions; `openai` itself is the Responses API, the provider's default since AI SDK 5.
const CASES = {
  chat: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.openai.chat("gpt-4o-mini"),
      ...s.instructions(SYSTEM_PROMPT),
      prompt: QUESTION,
      temperature: 0.2,
      maxOutputTokens: 100,
    }),
  chat_stream: (s, p, o) =>
    drain(
      s.ai.streamText({
        ...o,
        model: p.openai.chat("gpt-4o-mini"),
        ...s.instructions(SYSTEM_PROMPT),
        prompt: QUESTION,
        temperature: 0.2,
      }),
    ),
  tools: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.openai.chat("gpt-4o-mini"),
      prompt: WEATHER_QUESTION,
      tools: weatherTool(s),
      stopWhen: s.stopAfter(2),
    }),
  multi_turn: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.openai.chat("gpt-4o-mini"),
      ...s.instructions("You are a travel assistant."),
      messages: [
        { role: "user", content: "I am planning a trip to France." },
        { role: "assistant", content: "Lovely. Where would you like to go?" },
        { role: "user", content: QUESTION },
      ],
      temperature: 0.2,
    }),
  responses: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.openai("gpt-4o-mini"),
      ...s.instructions(SYSTEM_PROMPT),
      prompt: QUESTION,
      temperature: 0.2,
      maxOutputTokens: 100,
    }),
  responses_stream: (s, p, o) =>
    drain(
      s.ai.streamText({ ...o, model: p.openai("gpt-4o-mini"), ...s.instructions(SYSTEM_PROMPT), prompt: QUESTION }),
    ),
  responses_tools: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.openai("gpt-4o-mini"),
      prompt: WEATHER_QUESTION,
      tools: weatherTool(s),
      stopWhen: s.stopAfter(2),
    }),
  // Anthropic with the system prompt marked for caching: the first call writes the cache, the second reads it.
  messages: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.anthropic("claude-haiku-4-5"),
      ...s.instructions({ role: "system", content: SYSTEM_PROMPT, providerOptions: CACHE }),
      prompt: QUESTION,
      maxOutputTokens: 200,
    }),
  messages_stream: (s, p, o) =>
    drain(
      s.ai.streamText({
        ...o,
        model: p.anthropic("claude-haiku-4-5"),
        ...s.instructions({ role: "system", content: SYSTEM_PROMPT, providerOptions: CACHE }),
        prompt: QUESTION,
        maxOutputTokens: 200,
      }),
    ),
  messages_tools: (s, p, o) =>
    s.ai.generateText({
      ...o,
      model: p.anthropic("claude-haiku-4-5"),
      prompt: WEATHER_QUESTION,
      tools: weatherTool(s),
      stopWhen: s.stopAfter(2),
      maxOutputTokens: 200,
    }),
  // The provider fails (the fake answers 500 with OpenAI's error body): the SDK throws, the call is an error row.
  error: (s, p, o) =>
    s.ai
      .generateText({
        ...o,
        headers: { ...o.headers, [FAKE_STATUS_HEADER]: "500" },
        model: p.openai.chat("gpt-4o-mini"),
        prompt: QUESTION,
        temperature: 0.2,
      })
      .then(
        () => {
          throw new Error("the fake's 500 did not fail the call");
        },
        (error) => {
          if (!s.ai.APICallError.isInstance(error) || error.statusCode !== 500) throw error;
        },
      ),
};

async function runInstrumentation(tracer, instrumentation, baseURL) {
  const s = await sdk(instrumentation);
  const providers = {
    openai: s.createOpenAI({ baseURL, apiKey: API_KEY }),
    anthropic: s.createAnthropic({ baseURL, apiKey: API_KEY }),
  };
  const traces = {};
  for (const [name, run] of Object.entries(CASES)) {
    await tracer.startActiveSpan(`conformance ${name}`, async (span) => {
      traces[name] = span.spanContext().traceId;
      try {
        await run(s, providers, { ...s.options, headers: { [CASE_HEADER]: name }, maxRetries: 0 });
      } finally {
        span.end();
      }
    });
  }
  return traces;
}

async function main([tracesURL, ...targets]) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "conformance-vercel-ai" }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesURL, timeoutMillis: 30000 }))],
  });
  // What NodeSDK.start() does: the global tracer provider ("ai" is the tracer both SDKs ask it for) and an
  // async context, so the SDK's spans are children of the case's span.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  const tracer = trace.getTracer("conformance");
  const out = {};
  for (const target of targets) {
    const [instrumentation, baseURL] = target.split(/=(.*)/s);
    out[instrumentation] = await runInstrumentation(tracer, instrumentation, baseURL);
  }
  await provider.shutdown(); // flushes the batch processor: every span is exported before the process ends
  console.log(JSON.stringify(out));
}

await main(process.argv.slice(2));
